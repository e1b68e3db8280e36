/* The C side of the nghttp2 HTTP/2 adapter (gateway/protocol/http2_nghttp2.py).
 *
 * nghttp2's callbacks run here, in C, and leave one packed record per event in a buffer
 * that Python reads once per receive: a request's whole header section is one record, so
 * a request costs Python a few calls, not one per frame or per field.
 *
 * Record: u8 type, u8 flags, u16 zero, i32 stream id, u32 payload length, i64 aux, then
 * the payload. REQUEST payload: "method\0path\0authority\0host\0" then "name\0value\0"
 * per regular field (nghttp2 has refused NUL in names and values); aux is the
 * content-length or -1. DATA: the bytes. RESET, GOAWAY, CLOSED: aux is the error code.
 */
#ifndef GW_NGHTTP2_GLUE_H
#define GW_NGHTTP2_GLUE_H
#include <stddef.h>
#include <stdint.h>

/* ---- cffi declarations begin ---- */
enum {
    GW_EV_REQUEST = 1, GW_EV_DATA = 2, GW_EV_END = 3, GW_EV_RESET = 4, GW_EV_WINDOW = 5,
    GW_EV_GOAWAY = 6, GW_EV_CLOSED = 7,
    GW_FLAG_END_STREAM = 1, GW_FLAG_COOKIES = 2,  /* REQUEST: no body; cookie crumbs */
    GW_FLAG_REMOTE = 1,                            /* RESET: the peer sent RST_STREAM */
    /* CLOSED flags: why the connection ended */
    GW_CLOSED_FLOOD = 1, GW_CLOSED_HEADERS = 2, GW_CLOSED_PROTOCOL = 3,
    GW_CLOSED_CONTINUATIONS = 4
};

typedef struct gw_h2 gw_h2;

gw_h2 *gw_h2_new(uint32_t max_streams, uint32_t max_header_list, uint32_t flood_base);
void gw_h2_free(gw_h2 *h);
/* our SETTINGS and the larger connection window; 0 or an nghttp2 error code */
int gw_h2_initiate(gw_h2 *h, int32_t stream_window, int32_t connection_window);
int gw_h2_upgrade(gw_h2 *h, const uint8_t *settings, size_t len, int head);
/* parse bytes; returns the size of the event records left in *events */
size_t gw_h2_receive(gw_h2 *h, const uint8_t *data, size_t len, const uint8_t **events);
/* frames to write: everything nghttp2 has ready, returned through *out */
size_t gw_h2_send(gw_h2 *h, const uint8_t **out);
/* "name\0value\0" fields; body: 1 when DATA will follow (gw_h2_push) */
int gw_h2_respond(gw_h2 *h, int32_t stream_id, const uint8_t *fields, size_t len, int body);
int gw_h2_interim(gw_h2 *h, int32_t stream_id, const uint8_t *fields, size_t len);
/* body bytes for a responding stream (eof: they are the last); -1: the stream is gone */
int gw_h2_push(gw_h2 *h, int32_t stream_id, const uint8_t *data, size_t len, int eof);
/* body bytes the peer's windows still admit on the stream, minus what is queued */
int64_t gw_h2_sendable(gw_h2 *h, int32_t stream_id);
int gw_h2_consume(gw_h2 *h, int32_t stream_id, size_t size);
int gw_h2_reset(gw_h2 *h, int32_t stream_id, uint32_t error_code);
/* RST_STREAM(NO_ERROR) once the response has ended: the peer may stop its upload */
int gw_h2_stop_upload(gw_h2 *h, int32_t stream_id);
int32_t gw_h2_last_stream(gw_h2 *h);
/* a GOAWAY nghttp2 does not know about (streams go on; see start_drain) */
void gw_h2_goaway_notice(gw_h2 *h, int32_t last_stream_id, uint32_t error_code);
/* the final GOAWAY: what nghttp2 had queued leaves first */
void gw_h2_terminate(gw_h2 *h, int32_t last_stream_id, uint32_t error_code);
/* ---- cffi declarations end ---- */
#endif
