/* php-gateway bridge: the C API the Python front end calls through cffi.
 *
 * A pool of ZTS PHP request threads created in C. Python submits a request (all strings
 * copied here), streams the request body in, and drains response events (headers, body
 * chunks, end) after an eventfd wakes its loop. No Python code ever runs on a PHP thread.
 * gateway/php/build.py hands the lines between the two cffi markers to cffi's cdef as they
 * are: cffi runs no preprocessor, so keep them to plain declarations and #define NAME
 * <integer literal>, with no #include, #if or PHP header.
 */
#ifndef PHP_GATEWAY_BRIDGE_H
#define PHP_GATEWAY_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

/* ---- cffi declarations begin ---- */

typedef struct pg_config {
    int threads;                  /* PHP request threads */
    int queue_capacity;           /* requests waiting for a thread before submit says overloaded */
    const char *ini_path;         /* php.ini file to load; NULL loads none */
    const char *ini_entries;      /* "key=value\n" lines applied after php.ini */
    size_t body_buffer_bytes;     /* per request: request body bytes buffered ahead of PHP */
    size_t response_buffer_bytes; /* per request: response bytes PHP may run ahead of the client */
    size_t thread_stack_bytes;    /* stack of each PHP thread */
    /* Worker mode: the first worker_threads threads each run worker_script, which boots the
     * application once and takes requests through gateway_handle_request(). worker_vars
     * (name \0 value \0 ...) is its $_SERVER before the first request. */
    const char *worker_script;    /* NULL: no worker threads */
    const char *worker_vars;
    size_t worker_vars_len;
    int worker_threads;
    int worker_max_requests;      /* restart a worker script after that many requests; 0 never */
    int max_requests;             /* replace any thread after that many requests; 0 never */
    double request_timeout;       /* REQUEST_TIMEOUT in seconds, what a heartbeat renews; 0 none */
    double heartbeat_max;         /* heartbeats extend a request to this long after a thread took
                                   * it, no further; 0 refuses them */
} pg_config;

/* Event types delivered by pg_poll. */
#define PG_EV_HEADERS    1  /* code = status; data = "Name: value\0" lines */
#define PG_EV_BODY       2  /* data = body bytes; pg_ack() them once written out */
#define PG_EV_FINISH     3  /* the response is complete (fastcgi_finish_request or script end) */
#define PG_EV_BODY_SPACE 4  /* PHP consumed request body; pg_body_write may take more */
#define PG_EV_LOG        5  /* code = syslog level; data = message */
#define PG_EV_DONE       6  /* the thread is done with the request; code = exit status */
#define PG_EV_INTERIM    7  /* code = 1xx status; data = "Link: value\0" lines (headers_send) */
#define PG_EV_HEARTBEAT  8  /* code = milliseconds from now the request's deadline moves to */
#define PG_EV_FLUSH      9  /* PHP called flush(): the output so far should reach the client now */

/* Flags of PG_EV_DONE. */
#define PG_DONE_FATAL      1  /* ended by a fatal error (error, uncaught exception, limits) */
#define PG_DONE_CANCELLED  2  /* cancelled before or while running */
#define PG_DONE_TIMED_OUT  4  /* interrupted by pg_interrupt */
#define PG_DONE_BAILOUT    8  /* PHP bailed out of request startup or shutdown */
#define PG_DONE_UNAVAILABLE 16 /* no worker script could boot to take it */

/* Flag of PG_EV_HEADERS and PG_EV_BODY: the response is complete with this event (no
 * PG_EV_FINISH follows), so a whole page is known whole in the batch that brings it. */
#define PG_OUT_LAST 1

typedef struct pg_event {
    int64_t handle;   /* the request's handle; -1 for process-level log lines */
    int type;
    int code;
    int flags;
    char *data;       /* owned by the bridge until pg_free_events */
    size_t len;
    /* PG_EV_HEADERS and PG_EV_DONE: CLOCK_MONOTONIC seconds when a thread took the request;
     * PG_EV_DONE also when it was done with it. 0 in other events. */
    double started;
    double ended;
} pg_event;

typedef struct pg_stats {
    int threads;          /* configured */
    int threads_alive;    /* started and serving */
    int busy;             /* running a request now */
    int queued;           /* waiting for a thread */
    uint64_t requests;    /* completed */
    uint64_t fatals;      /* completed with PG_DONE_FATAL */
    uint64_t rejected;    /* refused as overloaded */
    int workers_failing;  /* worker threads whose script keeps failing before its first request */
    uint64_t worker_restarts; /* worker scripts started again (crash, max requests) */
    uint64_t thread_restarts; /* threads replaced (bailout, max requests) */
    uint64_t logs_dropped;    /* PHP log lines dropped because Python fell behind */
} pg_stats;

/* One PHP thread as pg_get_threads sees it: the request it runs (-1: idle) and since when
 * (CLOCK_MONOTONIC seconds). */
typedef struct pg_thread {
    int64_t handle;
    double started;
} pg_thread;

/* pg_submit_args refusals; cffi takes no parentheses here. */
#define PG_OVERLOADED -1
#define PG_STOPPED    -2
#define PG_UNAVAILABLE -3   /* for a worker, and every worker script fails to boot */

/* Starts PHP (module startup on a main thread) and the request threads. 0 on success. */
int pg_start(const pg_config *cfg, char *err, size_t errlen);
/* The eventfd that becomes readable when events are waiting. */
int pg_event_fd(void);
/* Copies the request and queues it: a handle >= 0, PG_OVERLOADED or PG_STOPPED. The fields
 * come as arguments, not a struct, because that is cheaper from cffi:
 *   content_type, cookie (joined with "; "), authorization: NULL when absent
 *   content_length: -1 when unknown (chunked, h2/h3 without it)
 *   proto_num: 1000 = HTTP/1.0, 1001 = HTTP/1.1, 2000, 3000
 *   request_time: seconds since the epoch, when the request arrived
 *   vars (CGI variables), headers (as received): name \0 value \0 ...
 *   body/body_len: request body bytes already received (copied); body_complete says no
 *   more will follow, so no pg_body_write is needed at all.
 *   worker: 1 = for the worker script (gateway_handle_request), 0 = run script_filename. */
int64_t pg_submit_args(const char *method, const char *request_uri, const char *query_string,
                       const char *script_filename, const char *content_type,
                       int64_t content_length, const char *cookie, const char *authorization,
                       int proto_num, double request_time, const char *vars, size_t vars_len,
                       const char *headers, size_t headers_len, const char *body,
                       size_t body_len, int body_complete, int worker);
/* Offers request body bytes; returns how many were taken. When fewer than len were taken a
 * PG_EV_BODY_SPACE event follows once PHP reads. eof marks the end once all bytes are in. */
size_t pg_body_write(int64_t handle, const char *data, size_t len, int eof);
/* The client took n bytes of response body: PHP may write that much more. */
void pg_ack(int64_t handle, size_t n);
/* The client is gone: stop reading and writing for this request. */
void pg_cancel(int64_t handle);
/* The gateway's request timeout hit: interrupt the script as max_execution_time would. */
void pg_interrupt(int64_t handle);
/* Moves up to max waiting events into out; returns how many. */
int pg_poll(pg_event *out, int max);
/* Frees the events' data; a PG_EV_DONE among them also releases its handle for reuse. */
void pg_free_events(pg_event *events, int n);
void pg_get_stats(pg_stats *out);
/* Fills up to max entries, one per request thread; returns how many. */
int pg_get_threads(pg_thread *out, int max);
/* Lets running requests and worker scripts finish for grace_seconds, then interrupts them
 * as a timeout would; stops the threads and shuts PHP down. */
void pg_stop(double grace_seconds);
const char *pg_php_version(void);

/* ---- cffi declarations end ---- */

#endif
