/* The whole contract between the bridge (bridge/) and the gateway's PHP extension (ext/).
 *
 * ext/ includes this header and nothing else of the bridge: it reaches the request running
 * on the calling PHP thread through these functions, never through the bridge's slots. The
 * bridge in turn knows ext/ only through the module entry point declared at the end.
 * Free of PHP headers so either side can include it without dragging in the other's.
 */
#ifndef PHP_GATEWAY_REQUEST_API_H
#define PHP_GATEWAY_REQUEST_API_H

#include <stdbool.h>
#include <stddef.h>

/* ---- implemented by bridge/sapi.c; call them on a PHP request thread only ------------ */

typedef void (*pg_header_visitor)(void *ctx, const char *name, size_t name_len,
                                  const char *value, size_t value_len);

/* Calls visit for each request header, in the order and spelling the client sent them.
 * Does nothing when no request runs on this thread. */
void pg_request_each_header(pg_header_visitor visit, void *ctx);

/* Flushes PHP's output buffers and headers and ends the response for the client, while the
 * script goes on (fastcgi_finish_request). False when there is no request or it has
 * already ended. */
bool pg_request_finish(void);

/* Sends an interim response (103 Early Hints) with the Link headers set so far, ahead of the
 * final one. False when there is no request or its headers have already been sent. */
bool pg_request_send_interim(int status);

/* Moves the running request's deadline to `seconds` from now (0: REQUEST_TIMEOUT again).
 * False when no deadline applies, seconds < 0, or the move would pass REQUEST_HEARTBEAT_MAX
 * after the request started. */
bool pg_request_heartbeat(long seconds);

/* While partial is set, PHP's read_post returns the request-body bytes that have arrived
 * (at least one, or none at the end) instead of waiting to fill its whole block, so a
 * script reading php://input sees lines as they come. */
void pg_request_body_partial(bool partial);

/* True while more request-body bytes are buffered or may still arrive. */
bool pg_request_body_more(void);

/* Worker mode: gateway_handle_request() is these two around the handler's call. Begin
 * blocks until a request is assigned to this thread, then binds it (superglobals, headers,
 * output, php://input, uploads as classic mode gives them); end sends what is left of the
 * response and unbinds it. */
enum {
    PG_WORKER_NOT_A_WORKER = -1, /* this thread runs no worker script */
    PG_WORKER_BUSY = -2,         /* called again from inside a handler */
    PG_WORKER_LEAVE = 0,         /* the server drains or the script must restart: stop looping */
    PG_WORKER_REQUEST = 1,       /* a request is bound: run the handler */
};
int pg_worker_request_begin(void);
void pg_worker_request_end(void);

/* ---- implemented by ext/gateway_ext.c ------------------------------------------------- */

/* The extension the SAPI registers as its additional module at startup. */
struct _zend_module_entry *php_gateway_ext_module(void);

#endif
