/* Worker mode's PHP side: gateway_handle_request(callable $handler): bool.
 *
 * The worker script boots the application once and loops on it; each call blocks until a
 * request is assigned to the thread, runs the handler with that request bound, and returns
 * false when the server drains or the script must restart (max requests). The bridge binds
 * and unbinds the request (bridge/request_api.h); this file only calls the handler and
 * decides what an exception or exit() in it means. */
#include "php.h"
#include "zend_exceptions.h"

#include "../bridge/request_api.h"
#include "worker.h"

ZEND_TSRMLS_CACHE_EXTERN()

ZEND_FUNCTION(gateway_handle_request) {
    zend_fcall_info fci;
    zend_fcall_info_cache fcc;
    ZEND_PARSE_PARAMETERS_START(1, 1)
        Z_PARAM_FUNC(fci, fcc)
    ZEND_PARSE_PARAMETERS_END();

    switch (pg_worker_request_begin()) {
    case PG_WORKER_NOT_A_WORKER:
        zend_throw_error(NULL, "%s() needs worker mode: the script must be WORKER_SCRIPT",
                         get_active_function_name());
        RETURN_THROWS();
    case PG_WORKER_BUSY:
        zend_throw_error(NULL, "%s() called from inside a request's handler",
                         get_active_function_name());
        RETURN_THROWS();
    case PG_WORKER_LEAVE:
        RETURN_FALSE;
    default:
        break;
    }

    zval retval;
    ZVAL_UNDEF(&retval);
    fci.retval = &retval;
    fci.params = NULL;
    fci.param_count = 0;
    zend_call_function(&fci, &fcc);
    zval_ptr_dtor(&retval);

    if (EG(exception)) {
        if (zend_is_unwind_exit(EG(exception)) || zend_is_graceful_exit(EG(exception))) {
            /* exit(): left to unwind the whole script, as it would in classic mode; the
             * response keeps what the handler sent and the script is started again. */
            RETURN_THROWS();
        }
        /* Uncaught: logged as PHP logs it, 500 unless headers left already; the loop goes
         * on, since the application's state is still whole. */
        zend_exception_error(EG(exception), E_ERROR);
    }
    pg_worker_request_end();
    RETURN_TRUE;
}
