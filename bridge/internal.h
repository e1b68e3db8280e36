/* Shared between the pool (pool.c, no PHP headers) and the SAPI (sapi.c); not for ext/,
 * which has request_api.h. */
#ifndef PHP_GATEWAY_INTERNAL_H
#define PHP_GATEWAY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include "bridge.h"

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

/* pg_submit_args' arguments (bridge.h says what each holds), before the slot copies them. */
typedef struct pg_request {
    const char *method, *request_uri, *query_string, *script_filename;
    const char *content_type, *cookie, *authorization;
    int64_t content_length;
    int proto_num;
    double request_time;
    const char *vars, *headers;
    size_t vars_len, headers_len;
} pg_request;

typedef struct pg_worker {
    int index;
    pthread_t tid;
    void *vm_interrupt;   /* &EG(vm_interrupt) of this thread (zend_atomic_bool *) */
    void *timed_out;      /* &EG(timed_out) */
    int64_t handle;       /* the request it runs, -1 when idle; guarded by the pool's lock */
    double started;       /* when it took that request */
    /* Worker mode (cfg.worker_script): only this thread touches these. */
    bool runs_script;     /* runs the worker script, which takes requests itself */
    bool in_loop;         /* the script reached gateway_handle_request this run */
    bool counted;         /* counted in the pool's alive threads (once, across respawns) */
    bool failing;         /* the script failed before its first request too often */
    struct pg_slot *current; /* the request the worker script is handling */
    uint64_t served;      /* requests since this thread (its TSRM) started */
    uint64_t script_served; /* requests since the worker script started */
} pg_worker;

typedef struct pg_slot {
    pthread_mutex_t mu;   /* guards everything below that changes while the request runs */
    pthread_cond_t cv;    /* PHP waits here for body bytes or response credit */
    uint32_t gen;
    int state;
    int64_t handle;
    int next_free;

    /* The request, copied into one allocation owned by the slot. */
    char *mem;
    const char *method, *request_uri, *query_string, *script_filename;
    const char *content_type, *cookie, *authorization;
    const char *vars, *headers;
    size_t vars_len, headers_len;
    int64_t content_length;
    int proto_num;
    double request_time;
    double started;       /* CLOCK_MONOTONIC seconds when a thread took the request */

    /* Request body: bytes [in_start, in_end) of in_buf wait for read_post. */
    char *in_buf;
    size_t in_cap, in_start, in_end;
    bool in_eof, in_want_space;
    bool in_partial;      /* read_post returns what has arrived (php://input), not a full block */

    /* Response: bytes handed to Python and not yet acknowledged (those gathered below
     * included). */
    size_t out_inflight, out_limit;
    /* Output not handed over yet (this thread's alone): PHP's head and body bytes gathered
     * up to out_batch, so a page up to that size reaches the event loop whole with its
     * head, in one wake-up, instead of a HEADERS event and then each 4 KiB spill of
     * output_buffering. flush() and the end of the response hand them over at once. */
    char *head_pend;
    size_t head_pend_len;
    int head_status;
    char *out_pend;
    size_t out_pend_len, out_pend_cap, out_batch;
    bool finished;        /* PG_EV_FINISH sent: later output is discarded */
    bool cancelled;       /* client gone or request timed out */
    bool interrupted;     /* pg_interrupt called */
    pg_worker *worker;
} pg_slot;

/* pool.c */
void pg_push_event(int64_t handle, int type, int code, int flags, char *data, size_t len);
/* The same with the request's start (and end) times, for PG_EV_HEADERS and PG_EV_DONE. */
void pg_push_timed_event(int64_t handle, int type, int code, int flags, char *data, size_t len,
                         double started, double ended);
/* Queues these events in order under one lock, so Python takes them in one batch. */
void pg_push_events(const pg_event *evs, int n);
double pg_now(void);
size_t pg_slot_read_body(pg_slot *s, char *buf, size_t count);
/* Blocks while the response credit is used up; false if the client is gone. */
bool pg_slot_reserve_output(pg_slot *s, size_t len);
void pg_slot_finish(pg_slot *s);
/* Hands the gathered head and body bytes to Python: a full batch (PG_PUSH_BATCH), flush()
 * (PG_PUSH_FLUSH: a PG_EV_FLUSH goes with them), the end (PG_PUSH_LAST: the last one is
 * marked PG_OUT_LAST; returns whether there was one to mark). */
enum { PG_PUSH_BATCH, PG_PUSH_FLUSH, PG_PUSH_LAST };
bool pg_slot_push_output(pg_slot *s, int end);
/* Gathers `len` bytes of output (credit already reserved); hands the batch over when full. */
void pg_slot_add_output(pg_slot *s, const char *data, size_t len);
/* gateway_request_heartbeat(): false when no deadline applies or the move passes the bound. */
bool pg_slot_heartbeat(pg_slot *s, double seconds);
void pg_count_fatal(void);
/* The one way a thread takes its next request and hands it back, for the classic loop and
 * gateway_handle_request alike. Take blocks; NULL: leave the loop (stopping, or the
 * thread's or script's max requests reached). */
pg_slot *pg_take_request(pg_worker *w);
void pg_finish_request(pg_worker *w, pg_slot *s, int exit_status, int flags);
/* The worker script reached gateway_handle_request (it booted). */
void pg_worker_booted(pg_worker *w);
const pg_config *pg_pool_config(void);
/* A process-level log line (syslog level), as PHP's own go. */
void pg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sapi.c, all called on PHP threads */
int pg_php_startup(const pg_config *cfg, char *err, size_t errlen);
void pg_php_thread_begin(pg_worker *w);
/* false: PHP bailed out of request start-up or shutdown, the thread must be replaced */
bool pg_php_run(pg_worker *w, pg_slot *s);
/* How one run of the worker script ended. */
typedef struct pg_script_end {
    bool healthy;         /* false: replace the thread */
    bool reached_loop;    /* it called gateway_handle_request */
    bool crashed;         /* fatal error, exit(), timeout or a request cut short */
} pg_script_end;
pg_script_end pg_php_run_worker(pg_worker *w);
void pg_php_thread_end(void);
void pg_php_shutdown(void);
/* Any thread: make the worker's running script stop at the next opcode, as a timeout. */
void pg_php_interrupt(pg_worker *w);
int pg_kick_signal(void);

#endif
