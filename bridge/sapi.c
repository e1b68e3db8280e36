/* The php-gateway SAPI: its own sapi_module_struct on a ZTS libphp. Runs on PHP threads only.
 *
 * One request: SG(server_context) points at the slot, so PHP itself reads the body through
 * read_post (as it arrives), the cookies through read_cookies, and builds $_GET, $_POST,
 * $_FILES (rfc1867 temp files registered) and php://input; register_server_variables adds
 * the CGI variables nginx's fastcgi_params would pass plus every header as HTTP_*.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "php.h"
#include "SAPI.h"
#include "php_main.h"
#include "php_variables.h"
#include "ext/standard/head.h"
#include "main/php_output.h"
#include "zend_atomic.h"

#include "internal.h"
#include "request_api.h"

ZEND_TSRMLS_CACHE_DEFINE()

/* The name decides whether OPcache starts (8.4 keeps an allow-list of SAPI names) and is
 * what frameworks see as PHP_SAPI: the one of php-fpm, the server our users come from. */
#define PG_SAPI_NAME "fpm-fcgi"
#define PG_KICK_SIGNAL (SIGRTMIN + 3)

static pg_slot *current_slot(void) { return (pg_slot *)SG(server_context); }

static size_t pg_ub_write(const char *str, size_t len) {
    pg_slot *s = current_slot();
    if (!s || len == 0) return len;
    if (s->finished) return len; /* after fastcgi_finish_request: discarded, as php-fpm does */
    if (!pg_slot_reserve_output(s, len)) {
        php_handle_aborted_connection(); /* bails out unless ignore_user_abort */
        return len;
    }
    char *copy = malloc(len);
    if (!copy) {
        php_handle_aborted_connection();
        return 0;
    }
    memcpy(copy, str, len);
    pg_push_event(s->handle, PG_EV_BODY, 0, 0, copy, len);
    return len;
}

static void pg_flush(void *server_context) {
    /* flush() before any output must still send the headers (SSE opens this way). */
    if (server_context && !SG(headers_sent)) sapi_send_headers();
}

static int pg_send_headers(sapi_headers_struct *headers) {
    pg_slot *s = current_slot();
    if (!s) return SAPI_HEADER_SENT_SUCCESSFULLY;
    size_t total = 0;
    zend_llist_position pos;
    for (sapi_header_struct *h = zend_llist_get_first_ex(&headers->headers, &pos); h;
         h = zend_llist_get_next_ex(&headers->headers, &pos)) {
        total += h->header_len + 1;
    }
    char *block = malloc(total ? total : 1);
    if (!block) return SAPI_HEADER_SEND_FAILED;
    char *c = block;
    for (sapi_header_struct *h = zend_llist_get_first_ex(&headers->headers, &pos); h;
         h = zend_llist_get_next_ex(&headers->headers, &pos)) {
        memcpy(c, h->header, h->header_len);
        c += h->header_len;
        *c++ = '\0';
    }
    int status = headers->http_response_code ? headers->http_response_code : 200;
    if (s->finished) {
        free(block);
        return SAPI_HEADER_SENT_SUCCESSFULLY;
    }
    pg_push_timed_event(s->handle, PG_EV_HEADERS, status, 0, block, total, s->started, 0.0);
    return SAPI_HEADER_SENT_SUCCESSFULLY;
}

static size_t pg_read_post(char *buf, size_t count) {
    pg_slot *s = current_slot();
    return s ? pg_slot_read_body(s, buf, count) : 0;
}

static char *pg_read_cookies(void) {
    pg_slot *s = current_slot();
    return s ? (char *)s->cookie : NULL;
}

/* Walks a "name \0 value \0 ..." block, the packing Python uses for vars and headers. The
 * slot's copy ends in a NUL, so a truncated last pair cannot read past it. */
static void each_pair(const char *p, size_t len, pg_header_visitor visit, void *ctx) {
    const char *end = p + len;
    while (p < end) {
        const char *name = p;
        size_t name_len = strlen(name);
        p += name_len + 1;
        if (p > end) break;
        const char *value = p;
        size_t value_len = strlen(value);
        p += value_len + 1;
        visit(ctx, name, name_len, value, value_len);
    }
}

static void register_one(const char *key, const char *val, size_t val_len, zval *arr) {
    char *v = (char *)val;
    size_t new_len = val_len;
    if (sapi_module.input_filter(PARSE_SERVER, key, &v, val_len, &new_len)) {
        php_register_variable_safe(key, v, new_len, arr);
    }
}

/* HTTP_* name of a header, as nginx builds it: upper case, '-' to '_'. Names with '_' are
 * dropped (nginx's underscores_in_headers off) so X_Forwarded_For cannot pose as
 * X-Forwarded-For. Returns false when the header is not passed. */
static bool http_var_name(const char *name, char *out, size_t outlen) {
    size_t n = strlen(name);
    if (n == 0 || n + 6 > outlen) return false;
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == '_') return false;
        if (ch == '-') ch = '_';
        else if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        out[5 + i] = ch;
    }
    out[5 + n] = '\0';
    return true;
}

static void register_var(void *arr, const char *name, size_t name_len, const char *value,
                         size_t value_len) {
    register_one(name, value, value_len, arr);
}

static void register_header(void *arr, const char *name, size_t name_len, const char *value,
                            size_t value_len) {
    char var[256];
    if (http_var_name(name, var, sizeof var)) register_one(var, value, value_len, arr);
}

static void pg_register_variables(zval *arr) {
    pg_slot *s = current_slot();
    /* The process environment first, as php-fpm with clear_env=no; request values win. */
    php_import_environment_variables(arr);
    if (!s) return;
    each_pair(s->vars, s->vars_len, register_var, arr);
    each_pair(s->headers, s->headers_len, register_header, arr);
}

static void pg_log_message(const char *message, int syslog_type) {
    pg_slot *s = current_slot();
    size_t len = strlen(message);
    char *copy = malloc(len + 1);
    if (!copy) return;
    memcpy(copy, message, len + 1);
    pg_push_event(s ? s->handle : -1, PG_EV_LOG, syslog_type, 0, copy, len);
}

static zend_result pg_get_request_time(double *t) {
    pg_slot *s = current_slot();
    if (!s) return FAILURE;
    *t = s->request_time;
    return SUCCESS;
}

static int pg_activate(void) {
    pg_slot *s = current_slot();
    if (!s) return SUCCESS;
    /* sapi_activate resets proto_num to 1.0; Location on POST answers 303 only for 1.1+. */
    SG(request_info).proto_num = s->proto_num;
    if (s->authorization) php_handle_auth_data(s->authorization);
    return SUCCESS;
}

static int pg_startup(sapi_module_struct *module) {
    return php_module_startup(module, php_gateway_ext_module());
}

static sapi_module_struct pg_sapi_module = {
    .name = PG_SAPI_NAME,
    .pretty_name = "php-gateway",
    .startup = pg_startup,
    .shutdown = php_module_shutdown_wrapper,
    .activate = pg_activate,
    .ub_write = pg_ub_write,
    .flush = pg_flush,
    .sapi_error = php_error,
    .send_headers = pg_send_headers,
    .read_post = pg_read_post,
    .read_cookies = pg_read_cookies,
    .register_server_variables = pg_register_variables,
    .log_message = pg_log_message,
    .get_request_time = pg_get_request_time,
};

static void kick_handler(int sig) { (void)sig; /* only interrupts blocking system calls */ }

int pg_kick_signal(void) { return PG_KICK_SIGNAL; }

int pg_php_startup(const pg_config *cfg, char *err, size_t errlen) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kick_handler; /* no SA_RESTART: sleep() and reads return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(PG_KICK_SIGNAL, &sa, NULL);

    php_tsrm_startup_ex(cfg->threads + 1);
    ZEND_TSRMLS_CACHE_UPDATE();
    zend_signal_startup();
    sapi_startup(&pg_sapi_module);
    /* sapi_startup clears ini_entries; set after it. */
    pg_sapi_module.ini_entries = cfg->ini_entries;
    pg_sapi_module.php_ini_ignore = cfg->ini_path ? 0 : 1;
    pg_sapi_module.php_ini_ignore_cwd = 1;
    pg_sapi_module.php_ini_path_override = (char *)cfg->ini_path;
    if (pg_sapi_module.startup(&pg_sapi_module) == FAILURE) {
        snprintf(err, errlen, "PHP module startup failed (see the log lines before this one)");
        return -1;
    }
    return 0;
}

void pg_php_thread_begin(pg_worker *w) {
    (void)ts_resource(0);
    ZEND_TSRMLS_CACHE_UPDATE();
    w->vm_interrupt = &EG(vm_interrupt);
    w->timed_out = &EG(timed_out);
}

void pg_php_interrupt(pg_worker *w) {
    zend_atomic_bool_store((zend_atomic_bool *)w->timed_out, true);
    zend_atomic_bool_store((zend_atomic_bool *)w->vm_interrupt, true);
    pthread_kill(w->tid, PG_KICK_SIGNAL);
}

void pg_php_run(pg_slot *s) {
    int flags = 0, exit_status = 0;
    SG(server_context) = s;
    SG(request_info).request_method = s->method;
    SG(request_info).request_uri = (char *)s->request_uri;
    SG(request_info).query_string = (char *)s->query_string;
    SG(request_info).path_translated = (char *)s->script_filename;
    SG(request_info).content_type = s->content_type;
    SG(request_info).content_length = s->content_length >= 0 ? s->content_length : 0;
    SG(request_info).auth_user = SG(request_info).auth_password = SG(request_info).auth_digest = NULL;
    SG(sapi_headers).http_response_code = 200; /* sapi_activate does not reset it */

    zend_first_try {
        if (php_request_startup() == SUCCESS) {
            zend_file_handle fh;
            zend_stream_init_filename(&fh, s->script_filename);
            fh.primary_script = 1;
            php_execute_script(&fh);
            zend_destroy_file_handle(&fh);
            exit_status = EG(exit_status);
            if (PG(last_error_message) && (PG(last_error_type) & (E_ERROR | E_CORE_ERROR | E_COMPILE_ERROR |
                                                                  E_USER_ERROR | E_PARSE | E_RECOVERABLE_ERROR))) {
                flags |= PG_DONE_FATAL;
            }
        } else {
            flags |= PG_DONE_BAILOUT;
        }
    } zend_catch {
        flags |= PG_DONE_BAILOUT;
    } zend_end_try();

    /* An unread body stays unread: draining it is the front end's business, not PHP's. */
    SG(post_read) = 1;
    zend_try {
        php_request_shutdown(NULL);
    } zend_catch {
        flags |= PG_DONE_BAILOUT;
    } zend_end_try();
    SG(server_context) = NULL;

    pthread_mutex_lock(&s->mu);
    if (s->interrupted) flags |= PG_DONE_TIMED_OUT;
    if (s->cancelled && !s->interrupted) flags |= PG_DONE_CANCELLED;
    s->state = SLOT_DONE;
    s->worker = NULL;
    pthread_mutex_unlock(&s->mu);
    if (flags & PG_DONE_FATAL) pg_count_fatal();
    pg_slot_finish(s);
    pg_push_timed_event(s->handle, PG_EV_DONE, exit_status, flags, NULL, 0, s->started, pg_now());
}

void pg_php_thread_end(void) { ts_free_thread(); }

void pg_php_shutdown(void) {
    php_module_shutdown();
    sapi_shutdown();
    tsrm_shutdown();
}

const char *pg_php_version(void) { return PHP_VERSION; }

/* ---- request_api.h: what ext/ may do with the request running on this thread --------- */

void pg_request_each_header(pg_header_visitor visit, void *ctx) {
    pg_slot *s = current_slot();
    if (s) each_pair(s->headers, s->headers_len, visit, ctx);
}

bool pg_request_finish(void) {
    pg_slot *s = current_slot();
    /* Only this thread sets finished (pg_slot_finish), so it reads it without the lock. */
    if (!s || s->finished) return false;
    php_output_end_all();
    php_header();
    pg_slot_finish(s);
    return true;
}
