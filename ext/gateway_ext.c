/* PHP functions php-fpm users rely on, registered as the SAPI's additional module:
 * fastcgi_finish_request(), getallheaders() and apache_request_headers(). */
#include "php.h"
#include "SAPI.h"
#include "ext/standard/head.h"
#include "ext/standard/info.h"
#include "main/php_output.h"

#include "php_gateway_ext.h"
#include "../bridge/internal.h"

ZEND_TSRMLS_CACHE_EXTERN()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_fastcgi_finish_request, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_getallheaders, 0, 0, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

/* Sends the response now and lets the script go on (queues, mail, cleanup), as php-fpm. */
PHP_FUNCTION(fastcgi_finish_request) {
    ZEND_PARSE_PARAMETERS_NONE();
    pg_slot *s = php_gateway_current_slot();
    if (!s || s->finished) RETURN_FALSE;
    php_output_end_all();
    php_header();
    pg_slot_finish(s);
    RETURN_TRUE;
}

/* The request headers with their names as the client sent them. */
PHP_FUNCTION(getallheaders) {
    ZEND_PARSE_PARAMETERS_NONE();
    array_init(return_value);
    pg_slot *s = php_gateway_current_slot();
    if (!s) return;
    const char *p = s->headers, *end = s->headers + s->headers_len;
    while (p < end) {
        const char *key = p;
        size_t klen = strlen(key);
        p += klen + 1;
        if (p > end) break;
        const char *val = p;
        size_t vlen = strlen(val);
        p += vlen + 1;
        add_assoc_stringl_ex(return_value, key, klen, val, vlen);
    }
}

static const zend_function_entry gateway_functions[] = {
    ZEND_FE(fastcgi_finish_request, arginfo_fastcgi_finish_request)
    ZEND_FE(getallheaders, arginfo_getallheaders)
    ZEND_RAW_FENTRY("apache_request_headers", zif_getallheaders, arginfo_getallheaders, 0, NULL, NULL)
    ZEND_FE_END
};

static PHP_MINFO_FUNCTION(php_gateway) {
    php_info_print_table_start();
    php_info_print_table_row(2, "php-gateway SAPI", "enabled");
    php_info_print_table_end();
}

zend_module_entry php_gateway_module_entry = {
    STANDARD_MODULE_HEADER,
    "php-gateway",
    gateway_functions,
    NULL, NULL, NULL, NULL,
    PHP_MINFO(php_gateway),
    "0.1.0",
    STANDARD_MODULE_PROPERTIES,
};
