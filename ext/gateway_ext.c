/* PHP functions php-fpm users rely on, registered as the SAPI's additional module:
 * fastcgi_finish_request(), getallheaders() and apache_request_headers(), FrankenPHP's
 * headers_send() (103 Early Hints), gateway_request_heartbeat() (tokio_php's
 * tokio_request_heartbeat()); and php://input read as the body arrives. Reaches the running request only through bridge/request_api.h. */
#include "php.h"
#include "SAPI.h"
#include "ext/standard/info.h"
#include "ext/standard/php_fopen_wrappers.h"

#include <pthread.h>

#include "../bridge/request_api.h"
#include "worker.h"

ZEND_TSRMLS_CACHE_EXTERN()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_fastcgi_finish_request, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_getallheaders, 0, 0, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_headers_send, 0, 0, IS_LONG, 0)
    ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, status, IS_LONG, 0, "103")
ZEND_END_ARG_INFO()

/* Sends the response now and lets the script go on (queues, mail, cleanup), as php-fpm. */
PHP_FUNCTION(fastcgi_finish_request) {
    ZEND_PARSE_PARAMETERS_NONE();
    RETURN_BOOL(pg_request_finish());
}

/* A header name as php-fpm behind nginx returns it (X-Requested-With, Authorization): php-fpm
 * rebuilds names from HTTP_* variables, so code reads $h['Authorization'] whatever the client
 * (or HTTP/2's lower case) sent. Names with '_' never reach PHP, as under nginx. */
static void add_header(void *array, const char *name, size_t name_len, const char *value,
                       size_t value_len) {
    char key[256];
    if (name_len == 0 || name_len >= sizeof key || memchr(name, '_', name_len)) return;
    bool word_start = true;
    for (size_t i = 0; i < name_len; i++) {
        char ch = name[i];
        if (word_start && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        else if (!word_start && ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        key[i] = ch;
        word_start = ch == '-';
    }
    add_assoc_stringl_ex((zval *)array, key, name_len, value, value_len);
}

/* The request headers, named as php-fpm names them, in the order the client sent them. */
PHP_FUNCTION(getallheaders) {
    ZEND_PARSE_PARAMETERS_NONE();
    array_init(return_value);
    pg_request_each_header(add_header, return_value);
}

/* ---- php://input as the body arrives ------------------------------------------------------
 * PHP's php://input asks the SAPI for 8 KiB and takes a short answer as the end of the body,
 * so a script reading it line by line would wait for 8 KiB or the end. The php:// wrapper is
 * replaced by one that opens PHP's own stream and gives php://input a read that lets the
 * SAPI answer with what has arrived, and marks the body unread again while more may come. */

static php_stream_wrapper_ops php_url_ops;
static const php_stream_wrapper php_url_wrapper = {&php_url_ops, NULL, 0};
static php_stream_ops input_ops;
static ssize_t (*php_input_read)(php_stream *stream, char *buf, size_t count);
static pthread_mutex_t input_ops_mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t input_read(php_stream *stream, char *buf, size_t count) {
    pg_request_body_partial(true);
    ssize_t n = php_input_read(stream, buf, count);
    pg_request_body_partial(false);
    if (n > 0 && pg_request_body_more()) SG(post_read) = 0;
    return n;
}

static bool names_input(const char *path) {
    if (!strncasecmp(path, "php://", 6)) path += 6;
    return !strcasecmp(path, "input");
}

static php_stream *open_php_url(php_stream_wrapper *wrapper, const char *path, const char *mode,
                                int options, zend_string **opened_path,
                                php_stream_context *context STREAMS_DC) {
    php_stream *stream = php_stream_php_wrapper.wops->stream_opener(
        wrapper, path, mode, options, opened_path, context STREAMS_REL_CC);
    if (stream && names_input(path)) {
        /* PHP's input ops are static in php_fopen_wrapper.c: copied from the first stream */
        pthread_mutex_lock(&input_ops_mu);
        if (!php_input_read) {
            input_ops = *stream->ops;
            php_input_read = stream->ops->read;
            input_ops.read = input_read;
        }
        pthread_mutex_unlock(&input_ops_mu);
        if (stream->ops->read == php_input_read) stream->ops = &input_ops;
    }
    return stream;
}

static PHP_MINIT_FUNCTION(php_gateway) {
    php_url_ops = *php_stream_php_wrapper.wops;
    php_url_ops.stream_opener = open_php_url;
    php_unregister_url_stream_wrapper("php");
    return php_register_url_stream_wrapper("php", &php_url_wrapper);
}

/* FrankenPHP's headers_send(): 103 sends Early Hints, an interim response with the Link
 * headers set so far, while the script goes on to the final one; another status becomes the
 * response's and its headers leave now. */
ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_gateway_request_heartbeat, 0, 0, _IS_BOOL, 0)
    ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, seconds, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

/* A long job says it is alive: the gateway's REQUEST_TIMEOUT for this request restarts, for
 * $seconds (0: REQUEST_TIMEOUT), within REQUEST_HEARTBEAT_MAX. PHP's own max_execution_time
 * is set_time_limit()'s business. Also under tokio_php's name, tokio_request_heartbeat(). */
PHP_FUNCTION(gateway_request_heartbeat) {
    zend_long seconds = 0;
    ZEND_PARSE_PARAMETERS_START(0, 1)
        Z_PARAM_OPTIONAL
        Z_PARAM_LONG(seconds)
    ZEND_PARSE_PARAMETERS_END();
    RETURN_BOOL(pg_request_heartbeat((long)seconds));
}

PHP_FUNCTION(headers_send) {
    zend_long status = 103;
    ZEND_PARSE_PARAMETERS_START(0, 1)
        Z_PARAM_OPTIONAL
        Z_PARAM_LONG(status)
    ZEND_PARSE_PARAMETERS_END();
    if (status == 103) {
        RETURN_LONG(pg_request_send_interim(103) ? SAPI_HEADER_SENT_SUCCESSFULLY
                                                 : SAPI_HEADER_SEND_FAILED);
    }
    if (status < 200 || status > 599) {
        /* 100 and 101 belong to the protocol layer; no other 1xx is sent */
        zend_argument_value_error(1, "must be 103 or a final status from 200 to 599");
        RETURN_THROWS();
    }
    SG(sapi_headers).http_response_code = (int)status;
    RETURN_LONG(sapi_send_headers());
}

static const zend_function_entry gateway_functions[] = {
    ZEND_FE(fastcgi_finish_request, arginfo_fastcgi_finish_request)
    ZEND_FE(getallheaders, arginfo_getallheaders)
    ZEND_FE(headers_send, arginfo_headers_send)
    ZEND_FE(gateway_request_heartbeat, arginfo_gateway_request_heartbeat)
    ZEND_RAW_FENTRY("tokio_request_heartbeat", zif_gateway_request_heartbeat,
                    arginfo_gateway_request_heartbeat, 0, NULL, NULL)
    ZEND_RAW_FENTRY("apache_request_headers", zif_getallheaders, arginfo_getallheaders, 0, NULL, NULL)
    PG_WORKER_FUNCTIONS
    ZEND_FE_END
};

static PHP_MINFO_FUNCTION(php_gateway) {
    php_info_print_table_start();
    php_info_print_table_row(2, "php-gateway SAPI", "enabled");
    php_info_print_table_end();
}

static zend_module_entry php_gateway_module_entry = {
    STANDARD_MODULE_HEADER,
    "php-gateway",
    gateway_functions,
    PHP_MINIT(php_gateway), NULL, NULL, NULL,
    PHP_MINFO(php_gateway),
    "0.1.0",
    STANDARD_MODULE_PROPERTIES,
};

zend_module_entry *php_gateway_ext_module(void) { return &php_gateway_module_entry; }
