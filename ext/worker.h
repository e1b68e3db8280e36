/* gateway_handle_request() (alias frankenphp_handle_request()), defined in ext/worker.c;
 * included by gateway_ext.c only, which lists PG_WORKER_FUNCTIONS in its function table. */
#ifndef PHP_GATEWAY_EXT_WORKER_H
#define PHP_GATEWAY_EXT_WORKER_H

#include "php.h"

ZEND_FUNCTION(gateway_handle_request);

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_gateway_handle_request, 0, 1, _IS_BOOL, 0)
    ZEND_ARG_TYPE_INFO(0, handler, IS_CALLABLE, 0)
ZEND_END_ARG_INFO()

/* FrankenPHP's name too, so worker scripts written for it (Symfony Runtime's runner,
 * Laravel Octane's worker) run unchanged. */
#define PG_WORKER_FUNCTIONS \
    ZEND_FE(gateway_handle_request, arginfo_gateway_handle_request) \
    ZEND_RAW_FENTRY("frankenphp_handle_request", zif_gateway_handle_request, \
                    arginfo_gateway_handle_request, 0, NULL, NULL)

#endif
