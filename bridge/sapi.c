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
#include "ext/session/php_session.h"
#include "zend_atomic.h"

#include "internal.h"
#include "request_api.h"

ZEND_TSRMLS_CACHE_DEFINE()

/* The name decides whether OPcache starts (8.4 keeps an allow-list of SAPI names) and is
 * what frameworks see as PHP_SAPI: the one of php-fpm, the server our users come from. */
#define PG_SAPI_NAME "fpm-fcgi"
#define PG_KICK_SIGNAL (SIGRTMIN + 3)

static pg_slot *current_slot(void) { return (pg_slot *)SG(server_context); }

/* This PHP thread's pool entry, and in worker mode the worker script's own context: a slot
 * with no request (handle -1) that is current while the script boots and between requests,
 * so its output is dropped and its log lines are the process's. */
static __thread pg_worker *this_worker;
static __thread pg_slot script_context;

static bool is_script_context(const pg_slot *s) { return s->handle < 0; }

static size_t pg_ub_write(const char *str, size_t len) {
    pg_slot *s = current_slot();
    if (!s || len == 0 || is_script_context(s)) return len;
    if (s->finished) return len; /* after fastcgi_finish_request: discarded, as php-fpm does */
    if (!pg_slot_reserve_output(s, len)) {
        php_handle_aborted_connection(); /* bails out unless ignore_user_abort */
        return len;
    }
    pg_slot_add_output(s, str, len);
    return len;
}

static void pg_flush(void *server_context) {
    pg_slot *s = server_context;
    if (!s || is_script_context(s) || s->finished) return;
    /* flush() before any output must still send the headers (SSE opens this way). */
    if (!SG(headers_sent)) sapi_send_headers();
    /* Told apart from output_buffering's spills, which need not leave at once: a
     * compressing stage flushes its encoder only here, not after every 4 KiB. */
    pg_slot_push_output(s, PG_PUSH_FLUSH);
}

static int pg_send_headers(sapi_headers_struct *headers) {
    pg_slot *s = current_slot();
    if (!s || is_script_context(s)) return SAPI_HEADER_SENT_SUCCESSFULLY;
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
    /* handed over with the first batch of body, a flush() or the end (pg_slot_push_output) */
    free(s->head_pend);
    s->head_pend = block;
    s->head_pend_len = total;
    s->head_status = status;
    return SAPI_HEADER_SENT_SUCCESSFULLY;
}

static size_t pg_read_post(char *buf, size_t count) {
    pg_slot *s = current_slot();
    return s && !is_script_context(s) ? pg_slot_read_body(s, buf, count) : 0;
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
    /* proto_num stays at sapi_activate's 1.0, as php-fpm leaves it: header('Location') after
     * a POST then answers 302, not the 303 PHP picks for HTTP/1.1, which is what users of
     * nginx + php-fpm see and test against. */
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
/* Without the handler, the signal's default action would end the process: never sent then. */
static bool kick_installed;

int pg_kick_signal(void) { return PG_KICK_SIGNAL; }

int pg_php_startup(const pg_config *cfg, char *err, size_t errlen) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kick_handler; /* no SA_RESTART: sleep() and reads return EINTR */
    sigemptyset(&sa.sa_mask);
    kick_installed = sigaction(PG_KICK_SIGNAL, &sa, NULL) == 0;
    if (!kick_installed) {
        pg_log(4, "no handler for signal %d (%s): a timed-out script blocked in a system call "
               "waits for the call to return", PG_KICK_SIGNAL, strerror(errno));
    }

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
    this_worker = w;
    w->vm_interrupt = &EG(vm_interrupt);
    w->timed_out = &EG(timed_out);
}

void pg_php_interrupt(pg_worker *w) {
    zend_atomic_bool_store((zend_atomic_bool *)w->timed_out, true);
    zend_atomic_bool_store((zend_atomic_bool *)w->vm_interrupt, true);
    if (kick_installed) pthread_kill(w->tid, PG_KICK_SIGNAL);
}

/* Points SAPI at the request: PHP keeps these pointers (into the slot) until deactivation. */
static void bind_request(pg_slot *s) {
    SG(server_context) = s;
    SG(request_info).request_method = s->method;
    SG(request_info).request_uri = (char *)s->request_uri;
    SG(request_info).query_string = (char *)s->query_string;
    SG(request_info).path_translated = (char *)s->script_filename;
    SG(request_info).content_type = s->content_type;
    SG(request_info).content_length = s->content_length >= 0 ? s->content_length : 0;
    SG(request_info).auth_user = SG(request_info).auth_password = SG(request_info).auth_digest = NULL;
}

static bool fatal_error_happened(void) {
    return PG(last_error_message) && (PG(last_error_type) & (E_ERROR | E_CORE_ERROR | E_COMPILE_ERROR |
                                                             E_USER_ERROR | E_PARSE | E_RECOVERABLE_ERROR));
}

bool pg_php_run(pg_worker *w, pg_slot *s) {
    int flags = 0, exit_status = 0;
    bind_request(s);
    SG(sapi_headers).http_response_code = 200; /* sapi_activate does not reset it */
    EG(exit_status) = 0; /* nor does request startup: one exit(3) would mark every later request */

    zend_first_try {
        if (php_request_startup() == SUCCESS) {
            zend_file_handle fh;
            zend_stream_init_filename(&fh, s->script_filename);
            fh.primary_script = 1;
            php_execute_script(&fh);
            zend_destroy_file_handle(&fh);
            exit_status = EG(exit_status);
            if (fatal_error_happened()) flags |= PG_DONE_FATAL;
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
    pg_finish_request(w, s, exit_status, flags);
    /* A bailout outside the script leaves PHP's state unknown: FrankenPHP replaces the
     * thread then, and so do we. */
    return !(flags & PG_DONE_BAILOUT);
}

/* ---- worker mode: one script boots once and takes requests itself -------------------- */

/* Modules whose request state must follow each worker request: filter keeps its own copy
 * of the request's input for filter_input(). Session is reset by reset_session(). */
static const char *const reloaded_modules[] = {"filter", NULL};

static void reload_modules(bool startup) {
    for (const char *const *name = reloaded_modules; *name; name++) {
        zend_module_entry *m = zend_hash_str_find_ptr(&module_registry, *name, strlen(*name));
        if (!m) continue;
        if (startup && m->request_startup_func) m->request_startup_func(m->type, m->module_number);
        if (!startup && m->request_shutdown_func) m->request_shutdown_func(m->type, m->module_number);
    }
}

/* The session module's request state and $_SESSION, as FrankenPHP resets them: the data is
 * written, the save handler the application registered at boot is kept. */
static void reset_session(void) {
    if (PS(session_status) == php_session_active) php_session_flush(1);
    if (!Z_ISUNDEF(PS(http_session_vars))) {
        zval_ptr_dtor(&PS(http_session_vars));
        ZVAL_UNDEF(&PS(http_session_vars));
    }
    if (PS(mod_data) || PS(mod_user_implemented)) {
        zend_try { PS(mod)->s_close(&PS(mod_data)); } zend_end_try();
    }
    if (PS(id)) {
        zend_string_release_ex(PS(id), 0);
        PS(id) = NULL;
    }
    if (PS(session_vars)) {
        zend_string_release_ex(PS(session_vars), 0);
        PS(session_vars) = NULL;
    }
    if (PS(session_started_filename)) {
        zend_string_release(PS(session_started_filename));
        PS(session_started_filename) = NULL;
        PS(session_started_lineno) = 0;
    }
    PS(session_status) = php_session_none;
    PS(in_save_handler) = 0;
    PS(set_handler) = 0;
    PS(mod_data) = NULL;
    PS(mod_user_is_open) = 0;
    PS(define_sid) = 1;
}

/* $_GET, $_POST, $_COOKIE, $_FILES and $_SERVER built again from the request now bound,
 * $_REQUEST too when the script has it; $_SESSION removed; $_ENV kept (php_hash_environment
 * is what request start-up would run). */
static void reset_superglobals(void) {
    zend_try {
        zval *files = &PG(http_globals)[TRACK_VARS_FILES];
        zval_ptr_dtor_nogc(files);
        memset(files, 0, sizeof *files);
        /* $_SESSION lives in the symbol table, not in http_globals. */
        zend_hash_str_del(&EG(symbol_table), "_SESSION", sizeof("_SESSION") - 1);
    } zend_end_try();
    zend_string *env = ZSTR_KNOWN(ZEND_STR_AUTOGLOBAL_ENV);
    zend_string *server = ZSTR_KNOWN(ZEND_STR_AUTOGLOBAL_SERVER);
    zend_string *request = ZSTR_KNOWN(ZEND_STR_AUTOGLOBAL_REQUEST);
    zend_auto_global *g;
    ZEND_HASH_MAP_FOREACH_PTR(CG(auto_globals), g) {
        if (g->name == env) continue;
        if (g->name == server) {
            g->armed = g->auto_global_callback(g->name);
        } else if (g->jit) {
            /* $GLOBALS is the script's own; $_REQUEST only if the script made it already */
            if (g->name == request && zend_hash_exists(&EG(symbol_table), g->name)) {
                g->armed = g->auto_global_callback(g->name);
            }
        } else if (g->auto_global_callback) {
            g->armed = g->auto_global_callback(g->name);
        } else {
            g->armed = 0;
        }
    } ZEND_HASH_FOREACH_END();
}

/* php://input's copy of the last body and other unexposed temp streams are closed. */
static void release_temp_streams(void) {
    int stream_type = php_file_le_stream();
    zend_resource *r;
    ZEND_HASH_FOREACH_PTR(&EG(regular_list), r) {
        if (r->type != stream_type) continue;
        php_stream *stream = r->ptr;
        if (stream && stream->ops == &php_stream_temp_ops && !stream->__exposed &&
            GC_REFCOUNT(r) == 1) {
            zend_list_delete(r);
        }
    } ZEND_HASH_FOREACH_END();
}

static void clear_last_error(void) {
    if (PG(last_error_message)) {
        zend_string_release(PG(last_error_message));
        PG(last_error_message) = NULL;
    }
    if (PG(last_error_file)) {
        zend_string_release(PG(last_error_file));
        PG(last_error_file) = NULL;
    }
}

/* Ends the bound context (a request, or the script's own): output buffers flushed and
 * closed, headers sent, uploaded files removed, module request state dropped; the steps of
 * php_request_shutdown that do not touch the script's own state. */
static void end_context(void) {
    zend_try { php_output_end_all(); } zend_end_try();
    reload_modules(false);
    reset_session();
    zend_try { php_output_deactivate(); } zend_end_try();
    SG(post_read) = 1; /* an unread body stays unread, as in classic mode */
    zend_try { sapi_deactivate(); } zend_end_try();
    zend_set_memory_limit(PG(memory_limit));
}

/* Starts the bound context; a request also gets fresh superglobals and output buffering. */
static bool begin_context(bool request) {
    bool ok = true;
    SG(sapi_headers).http_response_code = 200;
    zend_try {
        release_temp_streams();
        php_output_activate();
        PG(header_is_being_sent) = 0;
        PG(connection_status) = PHP_CONNECTION_NORMAL;
        sapi_activate();
        if (request) {
            if (PG(expose_php)) {
                sapi_add_header(SAPI_PHP_VERSION_HEADER, sizeof(SAPI_PHP_VERSION_HEADER) - 1, 1);
            }
            if (PG(output_handler) && PG(output_handler)[0]) {
                zval oh;
                ZVAL_STRING(&oh, PG(output_handler));
                php_output_start_user(&oh, 0, PHP_OUTPUT_HANDLER_STDFLAGS);
                zval_ptr_dtor(&oh);
            } else if (PG(output_buffering)) {
                php_output_start_user(NULL, PG(output_buffering) > 1 ? PG(output_buffering) : 0,
                                      PHP_OUTPUT_HANDLER_STDFLAGS);
            } else if (PG(implicit_flush)) {
                php_output_set_implicit_flush(1);
            }
            reset_superglobals();
        }
        reload_modules(true);
    } zend_catch {
        ok = false;
    } zend_end_try();
    SG(sapi_started) = 1;
    return ok;
}

int pg_worker_request_begin(void) {
    pg_worker *w = this_worker;
    if (!w || !w->runs_script) return PG_WORKER_NOT_A_WORKER;
    if (current_slot() != &script_context) return PG_WORKER_BUSY;
    if (!w->in_loop) {
        w->in_loop = true;
        pg_worker_booted(w);
    }
    zend_unset_timeout(); /* waiting for a request is not running */
    pg_slot *s = pg_take_request(w);
    if (!s) return PG_WORKER_LEAVE;
    end_context(); /* the script's own output and headers go nowhere */
    w->current = s;
    bind_request(s);
    clear_last_error();
    EG(exit_status) = 0;
    zend_atomic_bool_store_ex(&EG(timed_out), false); /* an interrupt meant for the last one */
    if (!begin_context(true)) zend_bailout(); /* the script ends; its runner answers 500 */
    zend_set_timeout(zend_ini_long("max_execution_time", sizeof("max_execution_time") - 1, 0), 0);
    return PG_WORKER_REQUEST;
}

void pg_worker_request_end(void) {
    pg_worker *w = this_worker;
    pg_slot *s = w ? w->current : NULL;
    if (!s) return;
    int flags = fatal_error_happened() ? PG_DONE_FATAL : 0;
    int exit_status = EG(exit_status);
    end_context();
    clear_last_error();
    w->current = NULL;
    bind_request(&script_context);
    pg_finish_request(w, s, exit_status, flags);
    begin_context(false);
}

pg_script_end pg_php_run_worker(pg_worker *w) {
    const pg_config *c = pg_pool_config();
    pg_script_end end = {.healthy = true};
    pg_slot *boot = &script_context;
    memset(boot, 0, sizeof *boot); /* nothing of the last run (finished, partial reads) */
    boot->handle = -1;
    boot->script_filename = c->worker_script;
    boot->vars = c->worker_vars;
    boot->vars_len = c->worker_vars_len;
    boot->proto_num = 1001;
    boot->request_time = (double)time(NULL);
    boot->in_eof = true;
    w->current = NULL;
    w->in_loop = false;
    bind_request(boot);
    SG(request_info).request_method = NULL; /* no request: as the CLI runs a script */
    SG(sapi_headers).http_response_code = 200;
    EG(exit_status) = 0;

    zend_first_try {
        if (php_request_startup() == SUCCESS) {
            /* A client that leaves must not end the script with its request. */
            PG(ignore_user_abort) = 1;
            zend_file_handle fh;
            zend_stream_init_filename(&fh, c->worker_script);
            fh.primary_script = 1;
            php_execute_script(&fh);
            zend_destroy_file_handle(&fh);
        } else {
            end.healthy = false;
        }
    } zend_catch {
        end.healthy = false;
    } zend_end_try();

    /* A request still bound was cut short (fatal error, exit() or a timeout in its
     * handler): the shutdown below sends it what PHP made of it (500 for a fatal). */
    pg_slot *s = w->current;
    int flags = fatal_error_happened() ? PG_DONE_FATAL : 0;
    int exit_status = EG(exit_status);
    SG(post_read) = 1;
    zend_try {
        php_request_shutdown(NULL);
    } zend_catch {
        end.healthy = false;
    } zend_end_try();
    SG(server_context) = NULL;
    w->current = NULL;
    if (s) pg_finish_request(w, s, exit_status, flags | (end.healthy ? 0 : PG_DONE_BAILOUT));
    end.reached_loop = w->in_loop;
    end.crashed = s || (flags & PG_DONE_FATAL) || exit_status != 0 || !end.healthy;
    return end;
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

void pg_request_body_partial(bool partial) {
    pg_slot *s = current_slot();
    if (s) s->in_partial = partial; /* read only by this thread, in pg_slot_read_body */
}

bool pg_request_body_more(void) {
    pg_slot *s = current_slot();
    if (!s) return false;
    pthread_mutex_lock(&s->mu);
    bool more = !s->cancelled && (s->in_end > s->in_start || !s->in_eof);
    pthread_mutex_unlock(&s->mu);
    return more;
}

static bool is_link_header(const sapi_header_struct *h) {
    return h->header_len > 5 && !strncasecmp(h->header, "link:", 5);
}

bool pg_request_heartbeat(long seconds) {
    pg_slot *s = current_slot();
    return s && pg_slot_heartbeat(s, (double)seconds);
}

bool pg_request_send_interim(int status) {
    pg_slot *s = current_slot();
    if (!s || s->finished || SG(headers_sent)) return false;
    size_t total = 0;
    zend_llist_position pos;
    zend_llist *list = &SG(sapi_headers).headers;
    for (sapi_header_struct *h = zend_llist_get_first_ex(list, &pos); h;
         h = zend_llist_get_next_ex(list, &pos)) {
        if (is_link_header(h)) total += h->header_len + 1;
    }
    char *block = malloc(total ? total : 1);
    if (!block) return false;
    char *c = block;
    for (sapi_header_struct *h = zend_llist_get_first_ex(list, &pos); h;
         h = zend_llist_get_next_ex(list, &pos)) {
        if (!is_link_header(h)) continue; /* hints only: cookies and the rest wait for the answer */
        memcpy(c, h->header, h->header_len);
        c += h->header_len;
        *c++ = '\0';
    }
    pg_push_event(s->handle, PG_EV_INTERIM, status, 0, block, total);
    return true;
}

bool pg_request_finish(void) {
    pg_slot *s = current_slot();
    /* Only this thread sets finished (pg_slot_finish), so it reads it without the lock. */
    if (!s || s->finished || is_script_context(s)) return false;
    php_output_end_all();
    php_header();
    pg_slot_finish(s);
    return true;
}
