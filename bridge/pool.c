/* The request-thread pool: slots, the bounded submission queue, the event queue and the
 * eventfd that wakes Python. Knows nothing of PHP beyond the sapi.c entry points. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define HANDLE_INDEX_BITS 20
#define HANDLE_INDEX_MASK ((1 << HANDLE_INDEX_BITS) - 1)
/* Log lines waiting for Python beyond these are dropped (and counted): a script that logs in
 * a loop must not grow the event queue without bound while the loop is busy. */
#define MAX_PENDING_LOGS 4096
#define MAX_PENDING_LOG_BYTES (4u << 20)
/* A worker script that fails this often in a row before its first request is reported
 * (log, /health) and then retried every FAILING_RETRY_SECS instead of spinning. */
#define WORKER_BOOT_ATTEMPTS 6
#define FAILING_RETRY_SECS 10.0

typedef struct pg_queue {
    int *ring;               /* slot indexes */
    int cap, head, len;
    pthread_cond_t cv;       /* the threads that take from it wait here */
} pg_queue;

static struct {
    pg_config cfg;
    char *ini_path, *ini_entries;

    pthread_t main_tid;
    pthread_mutex_t mu;      /* queue, free list, lifecycle */
    pthread_cond_t life_cv;  /* start-up / shutdown handshakes */
    bool started, stopping, stopped;
    int startup_rc;
    char startup_err[512];

    pg_slot *slots;
    int nslots, free_head;
    pg_queue queues[2];      /* classic threads take from [0], worker scripts from [1] */

    pg_worker *workers;
    int alive, busy, failing;
    int running;             /* threads created and not yet gone (a respawn keeps its count) */
    uint64_t requests, fatals, rejected, worker_restarts, thread_restarts;
    char *worker_script, *worker_vars;

    int efd;
    pthread_mutex_t ev_mu;
    pg_event *events;        /* ring */
    int ev_cap, ev_head, ev_len;
    int ev_logs;             /* PG_EV_LOG events among them, and their bytes */
    size_t ev_log_bytes;
    uint64_t logs_dropped;   /* since start */
    uint64_t logs_dropped_told;
} P = {.efd = -1, .free_head = -1};

/* ---- events ---------------------------------------------------------------------- */

double pg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* Python's time.monotonic() on Linux */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pg_push_event(int64_t handle, int type, int code, int flags, char *data, size_t len) {
    pg_push_timed_event(handle, type, code, flags, data, len, 0.0, 0.0);
}

static void enqueue_locked(const pg_event *ev) {
    if (P.ev_len == P.ev_cap) {
        /* Grows rather than blocks: events are bounded by the per-request credits. */
        int ncap = P.ev_cap ? P.ev_cap * 2 : 1024;
        pg_event *n = malloc(sizeof(pg_event) * (size_t)ncap);
        if (!n) abort();
        for (int i = 0; i < P.ev_len; i++) n[i] = P.events[(P.ev_head + i) % P.ev_cap];
        free(P.events);
        P.events = n;
        P.ev_cap = ncap;
        P.ev_head = 0;
    }
    P.events[(P.ev_head + P.ev_len) % P.ev_cap] = *ev;
    P.ev_len++;
}

/* Python drains to empty after each wakeup, so only the first event needs a write. */
static void wake_loop(void) {
    if (P.efd < 0) return;
    uint64_t one = 1;
    ssize_t r;
    do { r = write(P.efd, &one, sizeof one); } while (r < 0 && errno == EINTR);
}

void pg_push_timed_event(int64_t handle, int type, int code, int flags, char *data, size_t len,
                         double started, double ended) {
    pthread_mutex_lock(&P.ev_mu);
    if (type == PG_EV_LOG) {
        if (P.ev_logs >= MAX_PENDING_LOGS || P.ev_log_bytes + len > MAX_PENDING_LOG_BYTES) {
            P.logs_dropped++;
            pthread_mutex_unlock(&P.ev_mu);
            free(data);
            return;
        }
        P.ev_logs++;
        P.ev_log_bytes += len;
    }
    bool was_empty = P.ev_len == 0;
    pg_event ev = {.handle = handle, .type = type, .code = code, .flags = flags, .data = data,
                   .len = len, .started = started, .ended = ended};
    enqueue_locked(&ev);
    pthread_mutex_unlock(&P.ev_mu);
    if (was_empty) wake_loop();
}

void pg_push_events(const pg_event *evs, int n) {
    pthread_mutex_lock(&P.ev_mu);
    bool was_empty = P.ev_len == 0;
    for (int i = 0; i < n; i++) enqueue_locked(&evs[i]);
    pthread_mutex_unlock(&P.ev_mu);
    if (was_empty && n > 0) wake_loop();
}

int pg_poll(pg_event *out, int max) {
    pthread_mutex_lock(&P.ev_mu);
    int n = P.ev_len < max ? P.ev_len : max;
    for (int i = 0; i < n; i++) {
        out[i] = P.events[(P.ev_head + i) % P.ev_cap];
        if (out[i].type == PG_EV_LOG) {
            P.ev_logs--;
            P.ev_log_bytes -= out[i].len;
        }
    }
    if (n) {
        P.ev_head = (P.ev_head + n) % P.ev_cap;
        P.ev_len -= n;
    }
    uint64_t dropped = P.logs_dropped - P.logs_dropped_told;
    if (dropped && n < max && P.ev_logs == 0) {
        /* Told once the backlog is gone, so the notice itself is never dropped. */
        char *msg = malloc(96);
        if (msg) {
            int len = snprintf(msg, 96, "%llu PHP log lines dropped: the server fell behind",
                               (unsigned long long)dropped);
            out[n++] = (pg_event){.handle = -1, .type = PG_EV_LOG, .code = 4, .data = msg,
                                  .len = (size_t)len};
            P.logs_dropped_told = P.logs_dropped;
        }
    }
    pthread_mutex_unlock(&P.ev_mu);
    return n;
}

void pg_log(int level, const char *fmt, ...) {
    char *msg = malloc(512);
    if (!msg) return;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, 512, fmt, ap);
    va_end(ap);
    pg_push_event(-1, PG_EV_LOG, level, 0, msg, len < 0 ? 0 : len >= 512 ? 511 : (size_t)len);
}

int pg_event_fd(void) { return P.efd; }

/* ---- slots ----------------------------------------------------------------------- */

static pg_slot *slot_of(int64_t handle) {
    if (handle < 0 || !P.slots) return NULL;
    int idx = (int)(handle & HANDLE_INDEX_MASK);
    if (idx >= P.nslots) return NULL;
    pg_slot *s = &P.slots[idx];
    return s->handle == handle ? s : NULL;
}

static char *put(char **cursor, const char *src, size_t len) {
    char *dst = *cursor;
    memcpy(dst, src, len);
    dst[len] = '\0';
    *cursor += len + 1;
    return dst;
}

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

/* Copies every string of the request into one allocation (PHP may keep pointers to them
 * for the whole request). */
static bool copy_request(pg_slot *s, const pg_request *r) {
    const char *strs[] = {r->method, r->request_uri, r->query_string, r->script_filename,
                          r->content_type, r->cookie, r->authorization};
    size_t total = r->vars_len + r->headers_len + 2;
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) total += slen(strs[i]) + 1;
    char *mem = malloc(total);
    if (!mem) return false;
    char *c = mem;
    s->method = put(&c, r->method ? r->method : "GET", slen(r->method ? r->method : "GET"));
    s->request_uri = put(&c, r->request_uri ? r->request_uri : "", slen(r->request_uri));
    s->query_string = put(&c, r->query_string ? r->query_string : "", slen(r->query_string));
    s->script_filename = put(&c, r->script_filename ? r->script_filename : "", slen(r->script_filename));
    s->content_type = r->content_type ? put(&c, r->content_type, strlen(r->content_type)) : NULL;
    s->cookie = r->cookie ? put(&c, r->cookie, strlen(r->cookie)) : NULL;
    s->authorization = r->authorization ? put(&c, r->authorization, strlen(r->authorization)) : NULL;
    s->vars = put(&c, r->vars ? r->vars : "", r->vars ? r->vars_len : 0);
    s->vars_len = r->vars ? r->vars_len : 0;
    s->headers = put(&c, r->headers ? r->headers : "", r->headers ? r->headers_len : 0);
    s->headers_len = r->headers ? r->headers_len : 0;
    s->mem = mem;
    s->content_length = r->content_length;
    s->proto_num = r->proto_num ? r->proto_num : 1001;
    s->request_time = r->request_time;
    return true;
}

/* A batch of output is handed over at this size, or at half the response credit if that
 * is smaller (gathered bytes hold credit Python cannot give back until it has them). */
#define PG_OUT_BATCH (64 * 1024)

static void drop_pending_output(pg_slot *s) {
    free(s->head_pend);
    free(s->out_pend);
    s->head_pend = s->out_pend = NULL;
    s->head_pend_len = s->out_pend_len = s->out_pend_cap = 0;
}

static void reset_slot_io(pg_slot *s) {
    s->in_start = s->in_end = 0;
    s->in_eof = s->in_want_space = s->in_partial = false;
    s->out_inflight = 0;
    s->out_limit = P.cfg.response_buffer_bytes;
    drop_pending_output(s);
    s->out_batch = s->out_limit / 2 < PG_OUT_BATCH ? s->out_limit / 2 : PG_OUT_BATCH;
    s->finished = s->cancelled = s->interrupted = false;
    s->worker = NULL;
}

static int64_t submit(const pg_request *req, const char *body, size_t body_len,
                      bool body_complete, bool worker) {
    pg_queue *q = &P.queues[worker ? 1 : 0];
    pthread_mutex_lock(&P.mu);
    if (!P.started || P.stopping) {
        pthread_mutex_unlock(&P.mu);
        return PG_STOPPED;
    }
    if (worker ? P.failing == P.cfg.worker_threads : P.cfg.worker_threads == P.cfg.threads) {
        pthread_mutex_unlock(&P.mu); /* no thread of that kind could ever take it */
        return PG_UNAVAILABLE;
    }
    if (q->len >= q->cap || P.free_head < 0) {
        P.rejected++;
        pthread_mutex_unlock(&P.mu);
        return PG_OVERLOADED;
    }
    int idx = P.free_head;
    pg_slot *s = &P.slots[idx];
    P.free_head = s->next_free;
    pthread_mutex_unlock(&P.mu);

    /* The slot is ours alone until it is queued: copy outside the lock. */
    if (!copy_request(s, req)) {
        pthread_mutex_lock(&P.mu);
        s->next_free = P.free_head;
        P.free_head = idx;
        P.rejected++;
        pthread_mutex_unlock(&P.mu);
        return PG_OVERLOADED;
    }
    reset_slot_io(s);
    if (body_len > 0) {
        /* A body that arrived whole with the request: PHP reads it without a round trip. */
        s->in_cap = body_len > P.cfg.body_buffer_bytes ? body_len : P.cfg.body_buffer_bytes;
        s->in_buf = malloc(s->in_cap);
        if (!s->in_buf) abort();
        memcpy(s->in_buf, body, body_len);
        s->in_end = body_len;
    }
    s->in_eof = body_complete; /* before queueing: a thread may read the body at once */
    s->handle = ((int64_t)s->gen << HANDLE_INDEX_BITS) | idx;
    s->state = SLOT_QUEUED;
    int64_t handle = s->handle;

    pthread_mutex_lock(&P.mu);
    q->ring[(q->head + q->len) % q->cap] = idx;
    q->len++;
    pthread_mutex_unlock(&P.mu);
    /* Signalled after the unlock: a thread woken (and scheduled at once, on a busy core)
     * must not find the queue's lock still held by the event loop it just preempted. */
    pthread_cond_signal(&q->cv);
    return handle;
}

int64_t pg_submit_args(const char *method, const char *request_uri, const char *query_string,
                       const char *script_filename, const char *content_type,
                       int64_t content_length, const char *cookie, const char *authorization,
                       int proto_num, double request_time, const char *vars, size_t vars_len,
                       const char *headers, size_t headers_len, const char *body,
                       size_t body_len, int body_complete, int worker) {
    pg_request r = {
        .method = method, .request_uri = request_uri, .query_string = query_string,
        .script_filename = script_filename, .content_type = content_type,
        .content_length = content_length, .cookie = cookie, .authorization = authorization,
        .proto_num = proto_num, .request_time = request_time, .vars = vars,
        .vars_len = vars_len, .headers = headers, .headers_len = headers_len,
    };
    return submit(&r, body, body_len, body_complete != 0, worker != 0);
}

size_t pg_body_write(int64_t handle, const char *data, size_t len, int eof) {
    pg_slot *s = slot_of(handle);
    if (!s) return len;
    pthread_mutex_lock(&s->mu);
    if (s->state == SLOT_DONE || s->cancelled) {
        /* Nobody will read it any more: swallow it. */
        pthread_mutex_unlock(&s->mu);
        return len;
    }
    if (!s->in_buf) {
        s->in_cap = P.cfg.body_buffer_bytes;
        s->in_buf = malloc(s->in_cap);
        if (!s->in_buf) abort();
    }
    if (s->in_start > 0 && s->in_end + len > s->in_cap) {
        memmove(s->in_buf, s->in_buf + s->in_start, s->in_end - s->in_start);
        s->in_end -= s->in_start;
        s->in_start = 0;
    }
    size_t room = s->in_cap - s->in_end;
    size_t take = len < room ? len : room;
    memcpy(s->in_buf + s->in_end, data, take);
    s->in_end += take;
    if (take < len) {
        s->in_want_space = true;
    } else if (eof) {
        s->in_eof = true;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return take;
}

/* read_post: fills buf completely unless the body ends, since PHP takes a short read as EOF. */
size_t pg_slot_read_body(pg_slot *s, char *buf, size_t count) {
    size_t got = 0;
    bool notify = false;
    pthread_mutex_lock(&s->mu);
    while (got < count) {
        size_t avail = s->in_end - s->in_start;
        if (avail == 0) {
            if (s->in_eof || s->cancelled || (got > 0 && s->in_partial)) break;
            if (s->in_want_space) {
                /* Tell Python now, or it would never send the bytes we are waiting for. */
                s->in_want_space = false;
                pthread_mutex_unlock(&s->mu);
                pg_push_event(s->handle, PG_EV_BODY_SPACE, 0, 0, NULL, 0);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        size_t n = count - got < avail ? count - got : avail;
        memcpy(buf + got, s->in_buf + s->in_start, n);
        s->in_start += n;
        got += n;
        if (s->in_start == s->in_end) s->in_start = s->in_end = 0;
    }
    if (s->in_want_space && s->in_end - s->in_start < s->in_cap / 2) {
        s->in_want_space = false;
        notify = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (notify) pg_push_event(s->handle, PG_EV_BODY_SPACE, 0, 0, NULL, 0);
    return got;
}

bool pg_slot_reserve_output(pg_slot *s, size_t len) {
    pthread_mutex_lock(&s->mu);
    /* One write may overshoot the credit; the next waits until Python catches up. */
    while (s->out_inflight >= s->out_limit && !s->cancelled) pthread_cond_wait(&s->cv, &s->mu);
    bool ok = !s->cancelled;
    if (ok) s->out_inflight += len;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool pg_slot_heartbeat(pg_slot *s, double seconds) {
    double extend = seconds > 0 ? seconds : P.cfg.request_timeout;
    if (seconds < 0 || P.cfg.request_timeout <= 0 || P.cfg.heartbeat_max <= 0) return false;
    /* a script that keeps beating still ends: REQUEST_HEARTBEAT_MAX after it started */
    if (pg_now() + extend > s->started + P.cfg.heartbeat_max) return false;
    double ms = extend * 1000.0;
    pg_push_event(s->handle, PG_EV_HEARTBEAT, ms > 2e9 ? 2000000000 : (int)ms, 0, NULL, 0);
    return true;
}

bool pg_slot_push_output(pg_slot *s, int end) {
    /* head, body and flush in one push: the loop never sees a head whose page is still
     * coming, nor flushed bytes without their flush */
    bool last = end == PG_PUSH_LAST;
    pg_event evs[3];
    int n = 0;
    if (s->head_pend) {
        evs[n++] = (pg_event){.handle = s->handle, .type = PG_EV_HEADERS,
                              .code = s->head_status, .data = s->head_pend,
                              .len = s->head_pend_len, .started = s->started};
        s->head_pend = NULL;
        s->head_pend_len = 0;
    }
    if (s->out_pend_len) {
        evs[n++] = (pg_event){.handle = s->handle, .type = PG_EV_BODY, .data = s->out_pend,
                              .len = s->out_pend_len};
        s->out_pend = NULL;
        s->out_pend_len = s->out_pend_cap = 0;
    }
    if (n && last) evs[n - 1].flags = PG_OUT_LAST;
    if (end == PG_PUSH_FLUSH) evs[n++] = (pg_event){.handle = s->handle, .type = PG_EV_FLUSH};
    pg_push_events(evs, n);
    return n > 0 && last;
}

void pg_slot_add_output(pg_slot *s, const char *data, size_t len) {
    if (s->out_pend_len + len > s->out_batch) pg_slot_push_output(s, PG_PUSH_BATCH);
    if (len >= s->out_batch) { /* a big write is a batch of its own (nothing is pending) */
        s->out_pend = malloc(len);
        if (!s->out_pend) abort();
        memcpy(s->out_pend, data, len);
        s->out_pend_len = s->out_pend_cap = len;
        pg_slot_push_output(s, PG_PUSH_BATCH); /* with the head, if it is still held */
        return;
    }
    if (s->out_pend_len + len > s->out_pend_cap) {
        size_t cap = s->out_pend_cap ? s->out_pend_cap : 4096;
        while (cap < s->out_pend_len + len) cap *= 2;
        if (cap > s->out_batch) cap = s->out_batch;
        char *grown = realloc(s->out_pend, cap);
        if (!grown) abort();
        s->out_pend = grown;
        s->out_pend_cap = cap;
    }
    memcpy(s->out_pend + s->out_pend_len, data, len);
    s->out_pend_len += len;
}

void pg_slot_finish(pg_slot *s) {
    pthread_mutex_lock(&s->mu);
    bool first = !s->finished;
    s->finished = true;
    bool gone = s->cancelled;
    pthread_mutex_unlock(&s->mu);
    if (!first) return;
    if (gone) {
        drop_pending_output(s); /* nobody will read it */
    } else if (pg_slot_push_output(s, PG_PUSH_LAST)) {
        return; /* the last head or body said it */
    }
    pg_push_event(s->handle, PG_EV_FINISH, 0, 0, NULL, 0);
}

void pg_ack(int64_t handle, size_t n) {
    pg_slot *s = slot_of(handle);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->out_inflight = n >= s->out_inflight ? 0 : s->out_inflight - n;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void pg_cancel(int64_t handle) {
    pg_slot *s = slot_of(handle);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void pg_interrupt(int64_t handle) {
    pg_slot *s = slot_of(handle);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    s->interrupted = true;
    /* Under the slot lock the worker cannot move on to another request meanwhile. */
    if (s->state == SLOT_RUNNING && s->worker) pg_php_interrupt(s->worker);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void release_slot(int64_t handle) {
    pg_slot *s = slot_of(handle);
    if (!s || s->state != SLOT_DONE) return;
    free(s->mem);
    s->mem = NULL;
    free(s->in_buf);
    s->in_buf = NULL;
    s->state = SLOT_FREE;
    s->handle = -1;
    s->gen = (s->gen + 1) & 0x7fffffff;
    pthread_mutex_lock(&P.mu);
    int idx = (int)(s - P.slots);
    s->next_free = P.free_head;
    P.free_head = idx;
    pthread_mutex_unlock(&P.mu);
}

void pg_free_events(pg_event *events, int n) {
    for (int i = 0; i < n; i++) {
        free(events[i].data);
        events[i].data = NULL;
        if (events[i].type == PG_EV_DONE) release_slot(events[i].handle);
    }
}

int pg_get_threads(pg_thread *out, int max) {
    pthread_mutex_lock(&P.mu);
    int n = P.cfg.threads < max ? P.cfg.threads : max;
    for (int i = 0; i < n; i++) {
        out[i].handle = P.workers ? P.workers[i].handle : -1;
        out[i].started = P.workers ? P.workers[i].started : 0.0;
    }
    pthread_mutex_unlock(&P.mu);
    return n;
}

void pg_get_stats(pg_stats *out) {
    pthread_mutex_lock(&P.mu);
    out->threads = P.cfg.threads;
    out->threads_alive = P.alive;
    out->busy = P.busy;
    out->queued = P.queues[0].len + P.queues[1].len;
    out->requests = P.requests;
    out->fatals = P.fatals;
    out->rejected = P.rejected;
    /* A worker thread whose script cannot boot is not serving: /health says degraded. */
    out->threads_alive -= P.failing;
    out->workers_failing = P.failing;
    out->worker_restarts = P.worker_restarts;
    out->thread_restarts = P.thread_restarts;
    pthread_mutex_lock(&P.ev_mu);
    out->logs_dropped = P.logs_dropped;
    pthread_mutex_unlock(&P.ev_mu);
    pthread_mutex_unlock(&P.mu);
}

/* ---- taking and finishing requests: the classic loop and gateway_handle_request ---- */

const pg_config *pg_pool_config(void) { return &P.cfg; }

pg_slot *pg_take_request(pg_worker *w) {
    const pg_config *c = &P.cfg;
    if (c->max_requests > 0 && w->served >= (uint64_t)c->max_requests) return NULL;
    if (w->runs_script && c->worker_max_requests > 0 &&
        w->script_served >= (uint64_t)c->worker_max_requests) return NULL;
    pg_queue *q = &P.queues[w->runs_script ? 1 : 0];
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (q->len == 0 && !P.stopping) pthread_cond_wait(&q->cv, &P.mu);
        if (q->len == 0) break; /* stopping and nothing left */
        int idx = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        P.busy++;
        pg_slot *s = &P.slots[idx];
        s->started = pg_now();
        w->handle = s->handle;
        w->started = s->started;
        pthread_mutex_unlock(&P.mu);

        pthread_mutex_lock(&s->mu);
        bool skip = s->cancelled;
        s->state = skip ? SLOT_DONE : SLOT_RUNNING;
        s->worker = skip ? NULL : w;
        pthread_mutex_unlock(&s->mu);
        if (!skip) return s;
        /* Cancelled while queued: answered without running anything. */
        pg_push_timed_event(s->handle, PG_EV_DONE, 0, PG_DONE_CANCELLED, NULL, 0, s->started,
                            pg_now());
        pthread_mutex_lock(&P.mu);
        P.busy--;
        P.requests++;
        w->handle = -1;
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

void pg_finish_request(pg_worker *w, pg_slot *s, int exit_status, int flags) {
    pthread_mutex_lock(&s->mu);
    if (s->interrupted) flags |= PG_DONE_TIMED_OUT;
    if (s->cancelled && !s->interrupted) flags |= PG_DONE_CANCELLED;
    s->state = SLOT_DONE;
    s->worker = NULL;
    pthread_mutex_unlock(&s->mu);
    pg_slot_finish(s);
    /* After DONE Python may reuse the slot: nothing of it is read below. */
    double started = s->started;
    pg_push_timed_event(s->handle, PG_EV_DONE, exit_status, flags, NULL, 0, started, pg_now());
    w->served++;
    w->script_served++;
    pthread_mutex_lock(&P.mu);
    if (flags & PG_DONE_FATAL) P.fatals++;
    P.busy--;
    P.requests++;
    w->handle = -1;
    pthread_mutex_unlock(&P.mu);
}

void pg_count_fatal(void) {
    pthread_mutex_lock(&P.mu);
    P.fatals++;
    pthread_mutex_unlock(&P.mu);
}

/* ---- threads --------------------------------------------------------------------- */

static void block_async_signals(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    /* Faults must still kill the process; SIGRTMIN drives max_execution_time timers. */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

/* Counts the thread as serving, once: pg_start waits for every thread to get here. */
static void count_alive(pg_worker *w) {
    pthread_mutex_lock(&P.mu);
    if (!w->counted) {
        w->counted = true;
        P.alive++;
        pthread_cond_broadcast(&P.life_cv);
    }
    pthread_mutex_unlock(&P.mu);
}

/* No worker will boot soon: the requests queued for one get an answer now, not a timeout. */
static void refuse_queued_for_workers(void) {
    pg_queue *q = &P.queues[1];
    for (;;) {
        pg_slot *batch[64];
        int n = 0;
        pthread_mutex_lock(&P.mu);
        while (P.failing == P.cfg.worker_threads && q->len > 0 && n < 64) {
            batch[n++] = &P.slots[q->ring[q->head]];
            q->head = (q->head + 1) % q->cap;
            q->len--;
        }
        pthread_mutex_unlock(&P.mu);
        if (n == 0) return;
        for (int i = 0; i < n; i++) {
            pg_slot *s = batch[i];
            pthread_mutex_lock(&s->mu);
            s->state = SLOT_DONE;
            pthread_mutex_unlock(&s->mu);
            pg_push_timed_event(s->handle, PG_EV_DONE, 0, PG_DONE_UNAVAILABLE, NULL, 0, 0.0, 0.0);
        }
    }
}

static void set_failing(pg_worker *w, bool failing) {
    if (w->failing == failing) return;
    pthread_mutex_lock(&P.mu);
    w->failing = failing;
    P.failing += failing ? 1 : -1;
    pthread_mutex_unlock(&P.mu);
    if (failing) refuse_queued_for_workers();
}

void pg_worker_booted(pg_worker *w) {
    count_alive(w);
    if (w->failing) {
        set_failing(w, false);
        pg_log(5, "worker script on thread php-%d booted again", w->index);
    }
}

/* Sleeps up to secs; false when the pool stops meanwhile. */
static bool pause_unless_stopping(double secs) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)secs;
    until.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&P.mu);
    while (!P.stopping && pthread_cond_timedwait(&P.life_cv, &P.mu, &until) != ETIMEDOUT) {}
    bool go_on = !P.stopping;
    pthread_mutex_unlock(&P.mu);
    return go_on;
}

/* Runs the worker script again and again on this thread: at once after a clean end (its
 * loop left for max requests), with backoff after a crash (as FrankenPHP: 0, 0.1, 0.4, 0.9,
 * then 1 s). True when the thread itself must be replaced. */
static bool run_worker_script(pg_worker *w) {
    const pg_config *c = &P.cfg;
    int crashes = 0, boot_failures = 0;
    for (;;) {
        w->script_served = 0;
        pg_script_end end = pg_php_run_worker(w);
        if (!end.healthy) return true;
        if (!end.reached_loop) {
            boot_failures++;
            crashes++;
            count_alive(w); /* start-up does not wait for a script that cannot boot */
        } else {
            boot_failures = 0;
            crashes = end.crashed ? crashes + 1 : 0;
        }
        pthread_mutex_lock(&P.mu);
        bool stopping = P.stopping;
        if (!stopping) P.worker_restarts++;
        pthread_mutex_unlock(&P.mu);
        if (stopping) return false;
        if (c->max_requests > 0 && w->served >= (uint64_t)c->max_requests) return true;
        double delay = crashes <= 1 ? 0.0 : 0.1 * (crashes - 1) * (crashes - 1);
        if (delay > 1.0) delay = 1.0;
        if (boot_failures >= WORKER_BOOT_ATTEMPTS) {
            if (!w->failing) {
                set_failing(w, true);
                pg_log(3, "worker script %s failed %d times in a row before its first request; "
                       "thread php-%d retries it every %.0f s", c->worker_script, boot_failures,
                       w->index, FAILING_RETRY_SECS);
            }
            delay = FAILING_RETRY_SECS;
        } else if (!end.reached_loop) {
            pg_log(4, "worker script %s ended before its first request; starting it again",
                   c->worker_script);
        } else if (end.crashed) {
            pg_log(4, "worker script %s crashed; starting it again", c->worker_script);
        }
        if (delay > 0 && !pause_unless_stopping(delay)) return false;
    }
}

/* A thread that must go (bailout, max requests) starts its successor with the same slot in
 * P.workers and detaches itself, unless the pool is stopping: then it is joined as usual. */
static bool respawn(pg_worker *w);

static void *worker_main(void *arg) {
    pg_worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "php-%d", w->index);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGRTMIN);
    sigaddset(&unblock, pg_kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);

    pg_php_thread_begin(w);
    w->served = 0;
    bool replace;
    if (w->runs_script) {
        replace = run_worker_script(w);
    } else {
        count_alive(w);
        replace = false;
        pg_slot *s;
        while (!replace && (s = pg_take_request(w))) replace = !pg_php_run(w, s);
        if (P.cfg.max_requests > 0 && w->served >= (uint64_t)P.cfg.max_requests) replace = true;
    }
    pthread_mutex_lock(&P.mu);
    /* Before ts_free_thread frees what they point at: pg_stop reads them under this lock. */
    w->vm_interrupt = w->timed_out = NULL;
    pthread_mutex_unlock(&P.mu);
    pg_php_thread_end();
    if (replace && respawn(w)) return NULL;
    pthread_mutex_lock(&P.mu);
    if (w->counted) P.alive--;
    if (w->failing) P.failing--;
    P.running--;
    w->counted = w->failing = false;
    pthread_cond_broadcast(&P.life_cv);
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static bool respawn(pg_worker *w) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, P.cfg.thread_stack_bytes);
    pthread_mutex_lock(&P.mu);
    bool ok = false;
    if (!P.stopping) {
        pthread_t self = w->tid;
        int rc = pthread_create(&w->tid, &attr, worker_main, w);
        if (rc == 0) {
            pthread_detach(self);
            P.thread_restarts++;
            ok = true;
        } else {
            w->tid = self;
            pg_log(3, "could not replace PHP thread php-%d: %s", w->index, strerror(rc));
        }
    }
    pthread_mutex_unlock(&P.mu);
    pthread_attr_destroy(&attr);
    return ok;
}

static void *main_thread(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "php-main", 0, 0, 0);
    char err[512] = "";
    int rc = pg_php_startup(&P.cfg, err, sizeof err);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, P.cfg.thread_stack_bytes);
    for (int i = 0; rc == 0 && i < P.cfg.threads; i++) {
        P.workers[i].index = i;
        P.workers[i].handle = -1;
        P.workers[i].runs_script = i < P.cfg.worker_threads;
        pthread_mutex_lock(&P.mu);
        if (pthread_create(&P.workers[i].tid, &attr, worker_main, &P.workers[i]) != 0) {
            snprintf(err, sizeof err, "could not create PHP thread %d: %s", i, strerror(errno));
            rc = -1;
        } else {
            P.running++;
        }
        pthread_mutex_unlock(&P.mu);
    }
    pthread_attr_destroy(&attr);

    pthread_mutex_lock(&P.mu);
    if (rc == 0) {
        while (P.alive < P.cfg.threads) pthread_cond_wait(&P.life_cv, &P.mu);
    }
    P.startup_rc = rc;
    snprintf(P.startup_err, sizeof P.startup_err, "%s", err);
    P.started = rc == 0;
    P.stopped = rc != 0;
    pthread_cond_broadcast(&P.life_cv);
    /* The main PHP thread must outlive the request threads: it owns TSRM. */
    while (rc == 0 && !P.stopping) pthread_cond_wait(&P.life_cv, &P.mu);
    pthread_mutex_unlock(&P.mu);
    if (rc != 0) return NULL;

    for (int i = 0; i < P.cfg.threads; i++) {
        /* Stopping: no thread replaces itself any more, so the tid read now is final. */
        pthread_mutex_lock(&P.mu);
        pthread_t tid = P.workers[i].tid;
        pthread_mutex_unlock(&P.mu);
        pthread_join(tid, NULL);
    }
    pg_php_shutdown();
    pthread_mutex_lock(&P.mu);
    P.stopped = true;
    pthread_cond_broadcast(&P.life_cv);
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

int pg_start(const pg_config *cfg, char *err, size_t errlen) {
    if (P.slots) {
        snprintf(err, errlen, "the PHP pool is already started in this process");
        return -1;
    }
    if (cfg->threads < 1 || cfg->queue_capacity < 1) {
        snprintf(err, errlen, "threads and queue_capacity must be at least 1");
        return -1;
    }
    P.cfg = *cfg;
    P.ini_path = cfg->ini_path ? strdup(cfg->ini_path) : NULL;
    P.ini_entries = strdup(cfg->ini_entries ? cfg->ini_entries : "");
    P.cfg.ini_path = P.ini_path;
    P.cfg.ini_entries = P.ini_entries;
    if (!P.cfg.body_buffer_bytes) P.cfg.body_buffer_bytes = 256 * 1024;
    if (!P.cfg.response_buffer_bytes) P.cfg.response_buffer_bytes = 256 * 1024;
    if (!P.cfg.thread_stack_bytes) P.cfg.thread_stack_bytes = 16 * 1024 * 1024;

    pthread_mutex_init(&P.mu, NULL);
    pthread_mutex_init(&P.ev_mu, NULL);
    pthread_cond_init(&P.life_cv, NULL);
    P.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (P.efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    if (cfg->worker_threads < 0 || cfg->worker_threads > cfg->threads ||
        (cfg->worker_threads > 0 && !cfg->worker_script)) {
        snprintf(err, errlen, "worker_threads must be from 0 to threads, with a worker_script");
        return -1;
    }
    if (cfg->worker_threads > 0) {
        P.worker_script = strdup(cfg->worker_script);
        P.worker_vars = malloc(cfg->worker_vars_len + 1);
        if (!P.worker_script || !P.worker_vars) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (cfg->worker_vars_len) memcpy(P.worker_vars, cfg->worker_vars, cfg->worker_vars_len);
        P.worker_vars[cfg->worker_vars_len] = '\0';
        P.cfg.worker_script = P.worker_script;
        P.cfg.worker_vars = P.worker_vars;
    } else {
        P.cfg.worker_script = P.cfg.worker_vars = NULL;
        P.cfg.worker_vars_len = 0;
    }
    bool queues_ok = true;
    for (int i = 0; i < 2; i++) {
        P.queues[i].cap = cfg->queue_capacity;
        P.queues[i].ring = calloc((size_t)cfg->queue_capacity, sizeof(int));
        pthread_cond_init(&P.queues[i].cv, NULL);
        queues_ok = queues_ok && P.queues[i].ring;
    }
    /* Running + queued + finished-but-not-yet-released requests each hold a slot. */
    P.nslots = 2 * cfg->threads + 2 * cfg->queue_capacity + 64;
    if (P.nslots > HANDLE_INDEX_MASK) P.nslots = HANDLE_INDEX_MASK;
    P.slots = calloc((size_t)P.nslots, sizeof(pg_slot));
    P.workers = calloc((size_t)cfg->threads, sizeof(pg_worker));
    if (!queues_ok || !P.slots || !P.workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = P.nslots - 1; i >= 0; i--) {
        pthread_mutex_init(&P.slots[i].mu, NULL);
        pthread_cond_init(&P.slots[i].cv, NULL);
        P.slots[i].handle = -1;
        P.slots[i].next_free = P.free_head;
        P.free_head = i;
    }

    /* Threads inherit this mask: signals stay with Python's main thread. */
    sigset_t old;
    block_async_signals(&old);
    int rc = pthread_create(&P.main_tid, NULL, main_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "could not create the PHP main thread: %s", strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&P.mu);
    while (!P.started && !P.stopped) pthread_cond_wait(&P.life_cv, &P.mu);
    rc = P.startup_rc;
    if (rc != 0) snprintf(err, errlen, "%s", P.startup_err);
    pthread_mutex_unlock(&P.mu);
    if (rc != 0) pthread_join(P.main_tid, NULL);
    return rc;
}

void pg_stop(double grace_seconds) {
    pthread_mutex_lock(&P.mu);
    if (!P.started || P.stopping) {
        pthread_mutex_unlock(&P.mu);
        return;
    }
    P.stopping = true;
    pthread_cond_broadcast(&P.queues[0].cv);
    pthread_cond_broadcast(&P.queues[1].cv);
    pthread_cond_broadcast(&P.life_cv);
    pthread_mutex_unlock(&P.mu);
    /* Wake requests blocked on a client that will never come back. */
    for (int i = 0; i < P.nslots; i++) {
        pg_slot *s = &P.slots[i];
        pthread_mutex_lock(&s->mu);
        if (s->state == SLOT_RUNNING || s->state == SLOT_QUEUED) {
            s->cancelled = true;
            pthread_cond_broadcast(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* Scripts still running after the grace (a long sleep, a worker's clean-up that hangs)
     * are interrupted as a timeout would: they end with a fatal error, then the thread. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)grace_seconds;
    until.tv_nsec += (long)((grace_seconds - (double)(time_t)grace_seconds) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&P.mu);
    while (P.running > 0 && pthread_cond_timedwait(&P.life_cv, &P.mu, &until) != ETIMEDOUT) {}
    if (P.running > 0) {
        int n = 0;
        for (int i = 0; i < P.cfg.threads; i++) {
            if (P.workers[i].vm_interrupt) {
                pg_php_interrupt(&P.workers[i]);
                n++;
            }
        }
        pg_log(4, "%d PHP threads still running %.1f s into the stop: interrupted", n,
               grace_seconds);
    }
    pthread_mutex_unlock(&P.mu);
    pthread_join(P.main_tid, NULL);
}
