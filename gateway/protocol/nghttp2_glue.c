/* nghttp2 server session for gateway/protocol/http2_nghttp2.py; see nghttp2_glue.h. */
#include "nghttp2_glue.h"

#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#define SLICE (16 * 1024) /* bytes parsed between flood checks and output drains */
#define RECORD_HEAD 20

typedef struct {
    uint8_t *data;
    size_t len, cap;
} buf_t;

/* one stream's state, from its HEADERS to its close: the request body counted against its
   content-length, then the response body bytes waiting for nghttp2's data provider */
typedef struct gw_stream {
    buf_t body;
    size_t off;
    int eof, deferred;
    int responded;   /* the response is submitted */
    int ended;       /* END_STREAM has left */
    int reset_after; /* then RST_STREAM(NO_ERROR): the upload nobody reads stops */
    int64_t expect;  /* the request's content-length, -1 if none */
    uint64_t got;    /* request body bytes received */
    int32_t id;
    struct gw_stream *prev, *next;
} gw_stream;

struct gw_h2 {
    nghttp2_session *session;
    buf_t ev, out;
    /* the request header section being received (HEADERS + CONTINUATION are contiguous) */
    buf_t method, path, authority, host, fields;
    int64_t content_length;
    int cookies, pseudo, regular, malformed, hosts;
    uint64_t list_size, max_header_list;
    /* flood guard: frames that move no request forward against what the peer earned */
    uint64_t control_frames, payload_bytes, streams, flood_base;
    /* frame scanner: where the next frame header starts */
    size_t magic_left, frame_left, head_have;
    uint8_t head[9];
    size_t buffered; /* body bytes queued in gw_streams, all streams */
    uint32_t max_streams;
    uint32_t peer_initial_window;
    gw_stream *responding; /* every gw_stream (nghttp2_session_del does not close them) */
    int closed;
    int receiving; /* inside gw_h2_receive */
    uint32_t goaway_error; /* the error code of a GOAWAY nghttp2 sent on its own */
};

static int grow(buf_t *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(buf_t *b, const uint8_t *data, size_t len) {
    if (grow(b, len))
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static int put_z(buf_t *b, const uint8_t *data, size_t len) {
    if (put(b, data, len) || grow(b, 1))
        return -1;
    b->data[b->len++] = 0;
    return 0;
}

static uint8_t *record(gw_h2 *h, uint8_t type, uint8_t flags, int32_t id, uint32_t len,
                       int64_t aux) {
    if (grow(&h->ev, RECORD_HEAD + len))
        return NULL;
    uint8_t *p = h->ev.data + h->ev.len;
    p[0] = type;
    p[1] = flags;
    p[2] = p[3] = 0;
    memcpy(p + 4, &id, 4);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &aux, 8);
    h->ev.len += RECORD_HEAD + len;
    return p + RECORD_HEAD;
}

static void drain(gw_h2 *h) {
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->session, &data);
        if (n <= 0 || put(&h->out, data, (size_t)n))
            return;
    }
}

/* ends the connection from inside nghttp2's callbacks too, where it must not send */
static void close_with(gw_h2 *h, uint32_t code, uint8_t why) {
    if (h->closed)
        return;
    h->closed = 1;
    nghttp2_session_terminate_session(h->session, code);
    record(h, GW_EV_CLOSED, why, 0, 0, code);
}

/* -- callbacks ----------------------------------------------------------------------- */

/* -- the request's header section, checked as http2.py's malformed_h2_request does ---- */

enum { PSEUDO_METHOD = 1, PSEUDO_SCHEME = 2, PSEUDO_AUTHORITY = 4, PSEUDO_PATH = 8 };

static int is(const uint8_t *name, size_t len, const char *want) {
    size_t n = strlen(want);
    return len == n && memcmp(name, want, n) == 0;
}

/* RFC 9113 §8.2.1: 0x21-0x7e without upper case and without ':' */
static int valid_name(const uint8_t *name, size_t len) {
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = name[i];
        if (c < 0x21 || c > 0x7e || c == ':' || (c >= 'A' && c <= 'Z'))
            return 0;
    }
    return 1;
}

/* no NUL, CR or LF; no SP or HTAB at either end */
static int valid_value(const uint8_t *value, size_t len) {
    if (len && (value[0] == ' ' || value[0] == '\t' || value[len - 1] == ' ' ||
                value[len - 1] == '\t'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (value[i] == 0 || value[i] == '\r' || value[i] == '\n')
            return 0;
    return 1;
}

static int connection_specific(const uint8_t *name, size_t len) {
    return is(name, len, "connection") || is(name, len, "keep-alive") ||
           is(name, len, "proxy-connection") || is(name, len, "transfer-encoding") ||
           is(name, len, "upgrade");
}

static int digits(const uint8_t *value, size_t len, int64_t *out) {
    int64_t n = 0;
    if (len == 0 || len > 18)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        n = n * 10 + (value[i] - '0');
    }
    *out = n;
    return 1;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
    gw_h2 *h = ud;
    h->method.len = h->path.len = h->authority.len = h->host.len = h->fields.len = 0;
    h->content_length = -1;
    h->cookies = h->pseudo = h->regular = h->malformed = h->hosts = 0;
    h->list_size = 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    /* the stream's state from here on: its body's length, later its response */
    gw_stream *gs = calloc(1, sizeof *gs);
    if (!gs || nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, gs)) {
        free(gs);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    gs->id = frame->hd.stream_id;
    gs->expect = -1;
    gs->next = h->responding;
    if (h->responding)
        h->responding->prev = gs;
    h->responding = gs;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
    gw_h2 *h = ud;
    if (h->closed)
        return 0;
    h->list_size += namelen + valuelen + 32; /* RFC 9113 §6.5.2 */
    if (h->list_size > h->max_header_list) { /* the decoded size: HPACK bombs end here */
        close_with(h, NGHTTP2_ENHANCE_YOUR_CALM, GW_CLOSED_HEADERS);
        return NGHTTP2_ERR_PAUSE;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST || h->malformed)
        return 0; /* trailers: only their END_STREAM matters */
    if (!valid_value(value, valuelen)) {
        h->malformed = 1;
        return 0;
    }
    if (namelen && name[0] == ':') {
        buf_t *target = NULL;
        int bit = 0;
        if (is(name, namelen, ":method"))
            bit = PSEUDO_METHOD, target = &h->method;
        else if (is(name, namelen, ":path"))
            bit = PSEUDO_PATH, target = &h->path;
        else if (is(name, namelen, ":authority"))
            bit = PSEUDO_AUTHORITY, target = &h->authority;
        else if (is(name, namelen, ":scheme"))
            bit = PSEUDO_SCHEME; /* the connection's own scheme is reported */
        /* unknown (:protocol: no extended CONNECT), repeated, after a regular field */
        if (!bit || (h->pseudo & bit) || h->regular || (bit == PSEUDO_PATH && !valuelen)) {
            h->malformed = 1;
            return 0;
        }
        h->pseudo |= bit;
        return target && put(target, value, valuelen) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    }
    h->regular = 1;
    if (!valid_name(name, namelen) || connection_specific(name, namelen) ||
        (is(name, namelen, "te") && !(valuelen == 8 && strncasecmp((const char *)value,
                                                                    "trailers", 8) == 0))) {
        h->malformed = 1;
        return 0;
    }
    if (is(name, namelen, "host")) {
        /* RFC 9113 §8.3.1: a Host beside :authority must say the same */
        if ((h->pseudo & PSEUDO_AUTHORITY) &&
            (valuelen != h->authority.len || memcmp(value, h->authority.data, valuelen))) {
            h->malformed = 1;
            return 0;
        }
        if (!h->hosts++ && put(&h->host, value, valuelen))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else if (is(name, namelen, "cookie")) {
        h->cookies++;
    } else if (is(name, namelen, "content-length")) {
        if (!digits(value, valuelen, &h->content_length)) {
            h->malformed = 1;
            return 0;
        }
    }
    if (put_z(&h->fields, name, namelen) || put_z(&h->fields, value, valuelen))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* what the whole section lacks: :method; for all but CONNECT (answered 501) :scheme,
   :path and an authority */
static int complete(gw_h2 *h) {
    if (h->malformed || !(h->pseudo & PSEUDO_METHOD))
        return 0;
    if (h->method.len == 7 && memcmp(h->method.data, "CONNECT", 7) == 0)
        return 1;
    return (h->pseudo & PSEUDO_SCHEME) && (h->pseudo & PSEUDO_PATH) &&
           ((h->pseudo & PSEUDO_AUTHORITY) || h->hosts);
}

/* a stream error in what the peer sent: RST_STREAM(PROTOCOL_ERROR), and its app stops */
static int stream_error(gw_h2 *h, int32_t id) {
    if (nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return record(h, GW_EV_RESET, 0, id, 0, NGHTTP2_PROTOCOL_ERROR)
               ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int emit_request(gw_h2 *h, const nghttp2_frame *frame) {
    if (!complete(h)) /* RFC 9113 §8.1.1: a stream error, the others go on */
        return nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                         NGHTTP2_PROTOCOL_ERROR) ? NGHTTP2_ERR_CALLBACK_FAILURE
                                                                 : 0;
    gw_stream *gs = nghttp2_session_get_stream_user_data(h->session, frame->hd.stream_id);
    if (gs)
        gs->expect = h->content_length;
    buf_t *parts[4] = {&h->method, &h->path, &h->authority, &h->host};
    size_t len = h->fields.len + 4;
    for (int i = 0; i < 4; i++)
        len += parts[i]->len;
    uint8_t flags = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ? GW_FLAG_END_STREAM : 0;
    if (h->cookies > 1)
        flags |= GW_FLAG_COOKIES;
    uint8_t *p = record(h, GW_EV_REQUEST, flags, frame->hd.stream_id, (uint32_t)len,
                        h->content_length);
    if (!p)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    for (int i = 0; i < 4; i++) {
        if (parts[i]->len)
            memcpy(p, parts[i]->data, parts[i]->len);
        p += parts[i]->len;
        *p++ = 0;
    }
    if (h->fields.len)
        memcpy(p, h->fields.data, h->fields.len);
    h->streams++;
    return 0;
}

static int end_of_body(gw_h2 *h, int32_t id) {
    gw_stream *gs = nghttp2_session_get_stream_user_data(h->session, id);
    if (gs && gs->expect >= 0 && gs->got != (uint64_t)gs->expect)
        return stream_error(h, id); /* a body shorter than its content-length */
    return record(h, GW_EV_END, 0, id, 0, 0) ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
    gw_h2 *h = ud;
    if (h->closed)
        return 0;
    int32_t id = frame->hd.stream_id;
    int ended = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            return emit_request(h, frame);
        return ended ? end_of_body(h, id) : 0; /* trailers */
    case NGHTTP2_DATA:
        return ended ? end_of_body(h, id) : 0;
    case NGHTTP2_RST_STREAM:
        if (!record(h, GW_EV_RESET, GW_FLAG_REMOTE, id, 0, frame->rst_stream.error_code))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_WINDOW_UPDATE:
        if (!record(h, GW_EV_WINDOW, 0, id, 0, 0))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_SETTINGS: {
        /* a new initial window moves every stream's window: all may try again */
        uint32_t window =
            nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
        if (window != h->peer_initial_window) {
            h->peer_initial_window = window;
            if (!record(h, GW_EV_WINDOW, 0, 0, 0, 0))
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    }
    case NGHTTP2_GOAWAY:
        h->closed = 1;
        if (!record(h, GW_EV_GOAWAY, 0, 0, 0, frame->goaway.error_code))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud) {
    gw_h2 *h = ud;
    if (h->closed)
        return 0;
    h->payload_bytes += len;
    gw_stream *gs = nghttp2_session_get_stream_user_data(s, id);
    if (gs && gs->expect >= 0) {
        if (gs->got > (uint64_t)gs->expect)
            return 0; /* already reset */
        gs->got += len;
        if (gs->got > (uint64_t)gs->expect) /* a body longer than its content-length */
            return stream_error(h, id);
    }
    uint8_t *p = record(h, GW_EV_DATA, 0, id, (uint32_t)len, 0);
    if (!p)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(p, data, len);
    return 0;
}

/* a stream error nghttp2 found in what the peer sent (content-length against DATA, a
   malformed header section): it resets the stream itself */
static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int error,
                            void *ud) {
    gw_h2 *h = ud;
    if (frame->hd.stream_id > 0 && !h->closed &&
        !record(h, GW_EV_RESET, 0, frame->hd.stream_id, 0, NGHTTP2_PROTOCOL_ERROR))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static void unlink_stream(gw_h2 *h, gw_stream *gs) {
    if (gs->prev)
        gs->prev->next = gs->next;
    else
        h->responding = gs->next;
    if (gs->next)
        gs->next->prev = gs->prev;
    h->buffered -= gs->body.len - gs->off;
    free(gs->body.data);
    free(gs);
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *ud) {
    gw_h2 *h = ud;
    /* a stream nghttp2 reset on its own while reading (DATA beyond content-length): its
       app must stop; the resets Python asked for are known to it already */
    if (error != NGHTTP2_NO_ERROR && h->receiving && !h->closed &&
        !record(h, GW_EV_RESET, 0, id, 0, error))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    gw_stream *gs = nghttp2_session_get_stream_user_data(s, id);
    if (gs) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        unlink_stream(ud, gs);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
    gw_h2 *h = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
        h->goaway_error = frame->goaway.error_code;
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        gw_stream *gs = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
        if (gs) {
            gs->ended = 1;
            if (gs->reset_after)
                return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                                 NGHTTP2_NO_ERROR) == 0 ? 0
                                                 : NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *dest, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *ud) {
    gw_h2 *h = ud;
    gw_stream *gs = source->ptr;
    size_t avail = gs->body.len - gs->off;
    if (avail == 0 && !gs->eof) {
        gs->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(dest, gs->body.data + gs->off, n);
    gs->off += n;
    h->buffered -= n;
    h->payload_bytes += n;
    if (gs->off == gs->body.len) {
        gs->off = gs->body.len = 0;
        if (gs->eof)
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* -- the connection ------------------------------------------------------------------ */

gw_h2 *gw_h2_new(uint32_t max_streams, uint32_t max_header_list, uint32_t flood_base) {
    gw_h2 *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->max_streams = max_streams;
    h->peer_initial_window = NGHTTP2_INITIAL_WINDOW_SIZE;
    h->max_header_list = max_header_list;
    h->flood_base = flood_base;
    h->magic_left = NGHTTP2_CLIENT_MAGIC_LEN;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb)) {
        free(h);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    int rv = nghttp2_option_new(&opt);
    if (rv == 0) {
        /* the app's reading grants window (gw_h2_consume), not the arrival of the bytes */
        nghttp2_option_set_no_auto_window_update(opt, 1);
        nghttp2_option_set_no_closed_streams(opt, 1);
        /* the request checks are ours (on_header), the ones http2.py makes: nghttp2's would
           reset a request whose :authority is malformed, which HTTP/1 and h2 answer 400 */
        nghttp2_option_set_no_http_messaging(opt, 1);
        nghttp2_option_set_max_settings(opt, 32);      /* entries in one SETTINGS frame */
        nghttp2_option_set_max_continuations(opt, 8);  /* CVE-2024-28182 */
        rv = nghttp2_session_server_new2(&h->session, cb, h, opt);
        nghttp2_option_del(opt);
    }
    nghttp2_session_callbacks_del(cb);
    if (rv) {
        free(h);
        return NULL;
    }
    return h;
}

void gw_h2_free(gw_h2 *h) {
    if (!h)
        return;
    nghttp2_session_del(h->session); /* calls no on_stream_close: free what is left */
    while (h->responding)
        unlink_stream(h, h->responding);
    buf_t *bufs[] = {&h->ev, &h->out, &h->method, &h->path, &h->authority, &h->host,
                     &h->fields};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        free(bufs[i]->data);
    free(h);
}

int gw_h2_initiate(gw_h2 *h, int32_t stream_window, int32_t connection_window) {
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->max_header_list},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)stream_window},
    };
    int rv = nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, 3);
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0,
                                                   connection_window);
    return rv;
}

int gw_h2_upgrade(gw_h2 *h, const uint8_t *settings, size_t len, int head) {
    return nghttp2_session_upgrade2(h->session, settings, len, head, NULL);
}

/* PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, unknown types and empty DATA
   without END_STREAM: frames that move no request forward */
static int control_frame(const uint8_t *head) {
    uint32_t length = (uint32_t)head[0] << 16 | (uint32_t)head[1] << 8 | head[2];
    switch (head[3]) {
    case NGHTTP2_DATA:
        return length == 0 && !(head[4] & NGHTTP2_FLAG_END_STREAM);
    case NGHTTP2_HEADERS:
    case NGHTTP2_PUSH_PROMISE:
    case NGHTTP2_CONTINUATION:
    case NGHTTP2_GOAWAY:
        return 0;
    default:
        return 1;
    }
}

static int feed(gw_h2 *h, const uint8_t *data, size_t len) {
    ssize_t rv = nghttp2_session_mem_recv(h->session, data, len);
    if (rv >= 0)
        return 0;
    uint32_t code = NGHTTP2_PROTOCOL_ERROR;
    uint8_t why = GW_CLOSED_PROTOCOL;
    if (rv == NGHTTP2_ERR_FLOODED) { /* more PING/SETTINGS ACKs queued than nghttp2 keeps */
        code = NGHTTP2_ENHANCE_YOUR_CALM;
        why = GW_CLOSED_FLOOD;
    } else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        code = NGHTTP2_ENHANCE_YOUR_CALM;
        why = GW_CLOSED_CONTINUATIONS;
    } else if (rv == NGHTTP2_ERR_NOMEM || rv == NGHTTP2_ERR_CALLBACK_FAILURE) {
        code = NGHTTP2_INTERNAL_ERROR;
    }
    drain(h);
    close_with(h, code, why);
    return -1;
}

/* Walks the frames of the input: each frame header is judged (the flood guard) before
   nghttp2 sees it, and nghttp2 gets the bytes in spans between such checks. */
static void scan(gw_h2 *h, const uint8_t *data, size_t len) {
    while (len && !h->closed) {
        size_t n;
        if (h->magic_left || h->frame_left) {
            size_t left = h->magic_left ? h->magic_left : h->frame_left;
            n = len < left ? len : left;
            if (feed(h, data, n))
                return;
            if (h->magic_left)
                h->magic_left -= n;
            else
                h->frame_left -= n;
        } else {
            n = 9 - h->head_have;
            n = len < n ? len : n;
            memcpy(h->head + h->head_have, data, n);
            h->head_have += n;
            if (h->head_have == 9) {
                h->head_have = 0;
                h->frame_left = (size_t)h->head[0] << 16 | (size_t)h->head[1] << 8 | h->head[2];
                if (control_frame(h->head) &&
                    ++h->control_frames >
                        h->flood_base + h->streams * 10 + h->payload_bytes / 1024) {
                    drain(h); /* the frames allowed so far are answered */
                    close_with(h, NGHTTP2_ENHANCE_YOUR_CALM, GW_CLOSED_FLOOD);
                    return;
                }
                if (feed(h, h->head, 9))
                    return;
            }
        }
        data += n;
        len -= n;
    }
}

size_t gw_h2_receive(gw_h2 *h, const uint8_t *data, size_t len, const uint8_t **events) {
    h->ev.len = 0;
    h->receiving = 1;
    /* a slice at a time, answering as it goes: a flood is stopped within the slice
       that crossed the allowance, and nghttp2's queue of PING/SETTINGS ACKs stays short */
    while (len && !h->closed) {
        size_t n = len < SLICE ? len : SLICE;
        scan(h, data, n);
        drain(h);
        data += n;
        len -= n;
    }
    if (!h->closed) {
        drain(h);
        if (h->goaway_error) { /* nghttp2 ended the connection: a protocol error */
            h->closed = 1;
            record(h, GW_EV_CLOSED, GW_CLOSED_PROTOCOL, 0, 0, h->goaway_error);
        }
    } else {
        drain(h);
    }
    h->receiving = 0;
    *events = h->ev.data;
    return h->ev.len;
}

size_t gw_h2_send(gw_h2 *h, const uint8_t **out) {
    drain(h);
    *out = h->out.data;
    size_t n = h->out.len;
    h->out.len = 0; /* the caller copies before its next call */
    return n;
}

static nghttp2_nv *split_fields(const uint8_t *fields, size_t len, size_t *count) {
    size_t parts = 0;
    for (size_t i = 0; i < len; i++)
        parts += fields[i] == 0;
    nghttp2_nv *nva = malloc((parts / 2 + 1) * sizeof *nva);
    if (!nva)
        return NULL;
    size_t n = 0;
    const uint8_t *p = fields, *end = fields + len;
    while (p < end && n < parts / 2) {
        const uint8_t *name_end = memchr(p, 0, (size_t)(end - p));
        const uint8_t *value = name_end + 1;
        const uint8_t *value_end = memchr(value, 0, (size_t)(end - value));
        nghttp2_nv *nv = &nva[n++];
        nv->name = (uint8_t *)p;
        nv->namelen = (size_t)(name_end - p);
        nv->value = (uint8_t *)value;
        nv->valuelen = (size_t)(value_end - value);
        nv->flags = NGHTTP2_NV_FLAG_NONE;
        /* fields new in every response never enter the table (gateway/protocol/hpack_memo.py) */
        if ((nv->namelen == 11 && memcmp(p, "traceparent", 11) == 0) ||
            (nv->namelen == 10 && memcmp(p, "tracestate", 10) == 0) ||
            (nv->namelen == 12 && memcmp(p, "x-request-id", 12) == 0) ||
            (nv->namelen == 13 && memcmp(p, "server-timing", 13) == 0))
            nv->flags = NGHTTP2_NV_FLAG_NO_INDEX;
        p = value_end + 1;
    }
    *count = n;
    return nva;
}

/* The fields of a HEADERS frame for a stream still open: 0 and *nva to free, or the error. */
static int stream_fields(gw_h2 *h, int32_t stream_id, const uint8_t *fields, size_t len,
                         nghttp2_nv **nva, size_t *count) {
    if (h->closed || !nghttp2_session_find_stream(h->session, stream_id))
        return -1;
    *nva = split_fields(fields, len, count);
    return *nva ? 0 : NGHTTP2_ERR_NOMEM;
}

int gw_h2_respond(gw_h2 *h, int32_t stream_id, const uint8_t *fields, size_t len, int body) {
    nghttp2_nv *nva;
    size_t count;
    int rv = stream_fields(h, stream_id, fields, len, &nva, &count);
    if (rv)
        return rv;
    gw_stream *gs = nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (!gs) { /* stream 1 of an h2c upgrade: no HEADERS of its own came */
        gs = calloc(1, sizeof *gs);
        if (!gs || nghttp2_session_set_stream_user_data(h->session, stream_id, gs)) {
            free(gs);
            free(nva);
            return NGHTTP2_ERR_NOMEM;
        }
        gs->id = stream_id;
        gs->expect = -1;
        gs->next = h->responding;
        if (h->responding)
            h->responding->prev = gs;
        h->responding = gs;
    }
    gs->eof = !body;
    gs->responded = 1;
    nghttp2_data_provider provider = {.source.ptr = gs, .read_callback = read_body};
    rv = nghttp2_submit_response(h->session, stream_id, nva, count, body ? &provider : NULL);
    free(nva);
    return rv;
}

int gw_h2_interim(gw_h2 *h, int32_t stream_id, const uint8_t *fields, size_t len) {
    nghttp2_nv *nva;
    size_t count;
    int rv = stream_fields(h, stream_id, fields, len, &nva, &count);
    if (rv)
        return rv;
    rv = nghttp2_submit_headers(h->session, NGHTTP2_FLAG_NONE, stream_id, NULL, nva, count,
                                NULL);
    free(nva);
    return rv < 0 ? rv : 0;
}

int gw_h2_push(gw_h2 *h, int32_t stream_id, const uint8_t *data, size_t len, int eof) {
    gw_stream *gs = h->closed ? NULL : nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (!gs)
        return -1;
    if (gs->off && gs->body.len + len > gs->body.cap) { /* move the unsent part to the front */
        memmove(gs->body.data, gs->body.data + gs->off, gs->body.len - gs->off);
        gs->body.len -= gs->off;
        gs->off = 0;
    }
    if (put(&gs->body, data, len))
        return NGHTTP2_ERR_NOMEM;
    h->buffered += len;
    gs->eof |= eof;
    if (gs->deferred && (len || eof)) {
        gs->deferred = 0;
        return nghttp2_session_resume_data(h->session, stream_id);
    }
    return 0;
}

int64_t gw_h2_sendable(gw_h2 *h, int32_t stream_id) {
    gw_stream *gs = h->closed ? NULL : nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (!gs)
        return 0;
    int64_t stream = nghttp2_session_get_stream_remote_window_size(h->session, stream_id);
    int64_t connection = nghttp2_session_get_remote_window_size(h->session);
    stream -= (int64_t)(gs->body.len - gs->off);
    connection -= (int64_t)h->buffered;
    int64_t n = stream < connection ? stream : connection;
    return n > 0 ? n : 0;
}

int gw_h2_consume(gw_h2 *h, int32_t stream_id, size_t size) {
    if (h->closed)
        return 0;
    return nghttp2_session_consume(h->session, stream_id, size); /* a closed stream: */
    /* nghttp2 still books the connection's share */
}

int gw_h2_reset(gw_h2 *h, int32_t stream_id, uint32_t error_code) {
    if (h->closed)
        return 0;
    drain(h); /* the head and body bytes already given leave first, as on h2 */
    return nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, stream_id, error_code);
}

int gw_h2_stop_upload(gw_h2 *h, int32_t stream_id) {
    if (h->closed || !nghttp2_session_find_stream(h->session, stream_id))
        return 0;
    gw_stream *gs = nghttp2_session_get_stream_user_data(h->session, stream_id);
    if (gs && gs->responded && !gs->ended) {
        gs->reset_after = 1; /* RST_STREAM would overtake the response still queued */
        return 0;
    }
    return nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR);
}

int32_t gw_h2_last_stream(gw_h2 *h) {
    return nghttp2_session_get_last_proc_stream_id(h->session);
}

void gw_h2_goaway_notice(gw_h2 *h, int32_t last_stream_id, uint32_t error_code) {
    drain(h);
    uint8_t frame[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
    uint32_t last = htonl((uint32_t)last_stream_id), code = htonl(error_code);
    memcpy(frame + 9, &last, 4);
    memcpy(frame + 13, &code, 4);
    put(&h->out, frame, sizeof frame);
}

void gw_h2_terminate(gw_h2 *h, int32_t last_stream_id, uint32_t error_code) {
    if (h->closed)
        return;
    h->closed = 1;
    drain(h);
    nghttp2_session_terminate_session2(h->session, last_stream_id, error_code);
}
