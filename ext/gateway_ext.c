/* PHP functions php-fpm users rely on, registered as the SAPI's additional module:
 * fastcgi_finish_request(), getallheaders() and apache_request_headers().
 * Reaches the running request only through bridge/request_api.h. */
#include "php.h"
#include "ext/standard/info.h"

#include "../bridge/request_api.h"
#include "worker.h"

ZEND_TSRMLS_CACHE_EXTERN()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_fastcgi_finish_request, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_getallheaders, 0, 0, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

/* Sends the response now and lets the script go on (queues, mail, cleanup), as php-fpm. */
PHP_FUNCTION(fastcgi_finish_request) {
    ZEND_PARSE_PARAMETERS_NONE();
    RETURN_BOOL(pg_request_finish());
}

static void add_header(void *array, const char *name, size_t name_len, const char *value,
                       size_t value_len) {
    add_assoc_stringl_ex((zval *)array, name, name_len, value, value_len);
}

/* The request headers with their names as the client sent them. */
PHP_FUNCTION(getallheaders) {
    ZEND_PARSE_PARAMETERS_NONE();
    array_init(return_value);
    pg_request_each_header(add_header, return_value);
}

static const zend_function_entry gateway_functions[] = {
    ZEND_FE(fastcgi_finish_request, arginfo_fastcgi_finish_request)
    ZEND_FE(getallheaders, arginfo_getallheaders)
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
    NULL, NULL, NULL, NULL,
    PHP_MINFO(php_gateway),
    "0.1.0",
    STANDARD_MODULE_PROPERTIES,
};

zend_module_entry *php_gateway_ext_module(void) { return &php_gateway_module_entry; }
