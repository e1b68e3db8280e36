"""The asyncio side of the PHP thread pool.

`PhpPool.submit()` hands a request to the C bridge and returns a `PhpCall`: the caller
streams the request body in with `write_body()`, awaits `response()` for status and
headers, then `read()`s body chunks. The bridge wakes the loop through an eventfd; one
reader callback drains every waiting event in a batch. Response backpressure: a chunk is
acknowledged to the bridge only when the caller comes back for the next one, so a slow
client holds the PHP thread in ub_write instead of growing memory here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from gateway.observability.histogram import LATENCY_BUCKETS, QUEUE_BUCKETS, Histogram
from gateway.observability.request_record import RequestRecord, current_record
from gateway.observability.tracing import end_php_span
from gateway.php import binding
from gateway.protocol.events import Headers

log = structlog.get_logger("php")

# syslog levels PHP passes to log_message, mapped to our log levels
_SYSLOG_LEVELS = {0: "critical", 1: "critical", 2: "critical", 3: "error", 4: "warning",
                  5: "info", 6: "info", 7: "debug"}
_PHP_PREFIX = "PHP "  # PHP writes "PHP Warning:  text" to a SAPI's log
# PHP's own line when the gateway's REQUEST_TIMEOUT interrupts a script: it names
# max_execution_time's value, not the timeout that applied
_PHP_TIMEOUT = "PHP Fatal error:  Maximum execution time of"
_POLL_BATCH = 256
# a fatal or a timeout was logged already: its exit status 255 says nothing more
_LOGGED_ENDS = binding.lib.PG_DONE_FATAL | binding.lib.PG_DONE_TIMED_OUT
_FATAL, _FATAL_OR_TIMEOUT = binding.lib.PG_DONE_FATAL, _LOGGED_ENDS
_LAST = binding.lib.PG_OUT_LAST  # this head or body completes the response
# read once: a cffi lib attribute costs a lookup on every event otherwise
_EV_BODY, _EV_HEADERS = binding.lib.PG_EV_BODY, binding.lib.PG_EV_HEADERS
_EV_DONE = binding.lib.PG_EV_DONE
_EV_FLUSH, _EV_FINISH = binding.lib.PG_EV_FLUSH, binding.lib.PG_EV_FINISH
_EV_BODY_SPACE, _EV_LOG = binding.lib.PG_EV_BODY_SPACE, binding.lib.PG_EV_LOG
_EV_INTERIM, _EV_HEARTBEAT = binding.lib.PG_EV_INTERIM, binding.lib.PG_EV_HEARTBEAT
_DONE_CANCELLED, _DONE_TIMED_OUT = binding.lib.PG_DONE_CANCELLED, binding.lib.PG_DONE_TIMED_OUT
_DONE_BAILOUT, _DONE_UNAVAILABLE = binding.lib.PG_DONE_BAILOUT, binding.lib.PG_DONE_UNAVAILABLE
# Request deadlines are checked this often: one timer for the pool, none per request.
SWEEP_INTERVAL = 0.25


class Overloaded(Exception):
    """Every PHP thread is busy and the submission queue is full: answer 503."""


class PoolStopped(Exception):
    """The pool is not running (not started yet, or draining)."""


class Unavailable(Exception):
    """No thread can take this kind of request: every worker script fails to boot."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    threads: int = 4
    queue_capacity: int = 400
    ini_path: Path | None = None
    ini_set: tuple[tuple[str, str], ...] = ()
    body_buffer_bytes: int = 256 * 1024
    response_buffer_bytes: int = 256 * 1024
    thread_stack_bytes: int = 16 * 1024 * 1024
    # worker mode: the first worker_threads threads run worker_script (gateway_handle_request)
    worker_script: Path | None = None
    worker_threads: int = 0
    worker_vars: bytes = b""  # the script's $_SERVER before its first request (name \0 value \0)
    worker_max_requests: int = 0  # WORKER_MAX_REQUESTS: restart the script after N; 0 = never
    max_requests: int = 0  # PHP_MAX_REQUESTS: replace a thread after N requests; 0 = never
    request_timeout: float | None = None  # REQUEST_TIMEOUT: what a heartbeat renews
    heartbeat_max: float | None = None  # REQUEST_HEARTBEAT_MAX; None refuses heartbeats


@dataclass(slots=True)
class PhpRequest:
    """One request as PHP will see it. `server_vars` holds the CGI variables as
    name \0 value \0 pairs (gateway/php/cgi.py builds them); headers become HTTP_* in C."""

    method: bytes
    request_uri: bytes
    query_string: bytes
    script_filename: bytes
    server_vars: bytes
    headers: Headers  # lower-case names, as received
    content_length: int | None
    request_time: float
    proto_num: int = 1001
    body_complete: bool = False  # no body bytes will follow (GET, or Content-Length: 0)
    body: bytes = b""  # body bytes already received, handed over with the request
    worker: bool = False  # for the worker script (gateway_handle_request), not script_filename


class Outcome(NamedTuple):  # a tuple: made for every request, cheaper than a frozen dataclass
    exit_status: int
    fatal: bool
    cancelled: bool
    timed_out: bool
    bailout: bool
    unavailable: bool = False  # no worker script booted to take it


_outcomes: dict[tuple[int, int], Outcome] = {}


def _outcome(code: int, flags: int) -> Outcome:
    """The Outcome of an exit status and done-flags: a tuple, so one is shared by every
    request that ends alike (nearly all end 0, no flags), not built for each."""
    outcome = _outcomes.get((code, flags))
    if outcome is None:
        outcome = Outcome(code, bool(flags & _FATAL), bool(flags & _DONE_CANCELLED),
                          bool(flags & _DONE_TIMED_OUT), bool(flags & _DONE_BAILOUT),
                          bool(flags & _DONE_UNAVAILABLE))
        if len(_outcomes) >= 1024:
            _outcomes.clear()  # exit(N) with ever new N gets no cache, not a leak
        _outcomes[(code, flags)] = outcome
    return outcome


@dataclass(frozen=True, slots=True)
class PoolStats:
    threads: int
    threads_alive: int
    busy: int
    queued: int
    requests: int
    fatals: int
    rejected: int
    timeouts: int  # ended by REQUEST_TIMEOUT (504, or cut once the response started)
    sse_streams: int  # text/event-stream responses open now
    workers_failing: int = 0  # worker threads whose script keeps failing before a request
    worker_restarts: int = 0  # worker scripts started again (crash, WORKER_MAX_REQUESTS)
    thread_restarts: int = 0  # threads replaced (bailout, PHP_MAX_REQUESTS)
    logs_dropped: int = 0  # PHP log lines dropped while the loop fell behind


@dataclass(eq=False, slots=True)
class PhpCall:
    """A request running (or queued) on the pool."""

    handle: int
    _pool: PhpPool
    _loop: asyncio.AbstractEventLoop
    status: int = 0
    headers: Headers = field(default_factory=list)
    outcome: Outcome | None = None
    deadline: float = 0.0  # loop time past which the request times out; 0 = never
    timeout: float | None = None  # the seconds that deadline came from (SSE_TIMEOUT once SSE)
    expired: bool = False
    # time.monotonic(): queued here, taken by a PHP thread, done (the bridge's clock); 0 = not
    submitted: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    record: RequestRecord | None = None  # the observed request, for PHP's log lines
    _head: asyncio.Future[bool | None] | None = None  # None: an interim response came
    _interims: deque[tuple[int, Headers]] | None = None  # made by the first: most have none
    _chunks: deque[bytes] = field(default_factory=deque)
    _unacked: int = 0
    _finished: bool = False  # no more body will come
    _flush: bool = False  # PHP called flush() since read_out() last returned
    _waiter: asyncio.Future[None] | None = None  # read() waiting for a chunk
    _space: asyncio.Future[None] | None = None  # write_body() waiting for room
    _done: asyncio.Future[Outcome] | None = None
    _body_closed: bool = False

    # --- request body -----------------------------------------------------------------

    async def write_body(self, data: bytes) -> None:
        """Feeds request-body bytes to PHP; waits while its buffer is full."""
        view = memoryview(data)
        lib, ffi = binding.lib, binding.ffi
        while view and self.outcome is None:
            taken = lib.pg_body_write(self.handle, ffi.from_buffer(view), len(view), 0)
            view = view[taken:]
            if view:
                self._space = self._loop.create_future()
                await self._space
                self._space = None
                self._check_expired()

    def end_body(self) -> None:
        if not self._body_closed:
            self._body_closed = True
            if self.outcome is None:
                binding.lib.pg_body_write(self.handle, b"", 0, 1)

    # --- response ---------------------------------------------------------------------

    async def response(
        self, interim: Callable[[int, Headers], Awaitable[None]] | None = None
    ) -> tuple[int, Headers] | None:
        """Status and headers once PHP sends them; None if the script ended without any
        (start-up failure or a cancelled request). Interim responses PHP sends first
        (headers_send(103)) are handed to `interim` as they come."""
        while True:
            while self._interims:
                status, headers = self._interims.popleft()
                if interim is not None and not self.status:
                    await interim(status, headers)
            if self.status:
                return self.status, self.headers
            if self.outcome is not None:
                return None
            self._check_expired()
            if self._head is None:
                self._head = self._loop.create_future()
            woke = await self._head
            self._head = None
            if woke is None:
                continue
            if not self.status:
                self._check_expired()
            return (self.status, self.headers) if self.status else None

    async def read(self) -> bytes:
        """The next body bytes (all chunks waiting, joined); b"" at the end of the body.
        Calling it again tells the bridge the previous bytes have left."""
        while (out := await self.read_out()) is not None:
            if out[0]:
                return out[0]  # a flush() with nothing new is not the end: read on
        return b""

    async def read_out(self) -> tuple[bytes, bool] | None:
        """As read(), and whether PHP called flush() after these bytes: output that
        output_buffering spilled without one may be held (by an encoder) until more comes.
        A flush with nothing new is (b"", True); None at the end of the body."""
        if self._unacked:
            binding.lib.pg_ack(self.handle, self._unacked)
            self._unacked = 0
        while not self._chunks and not self._flush:
            if self._finished:
                return None
            self._check_expired()
            self._waiter = self._loop.create_future()
            await self._waiter
            self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._unacked = len(data)
        flush, self._flush = self._flush, False
        return data, flush

    def complete_body(self) -> bytes | None:
        """The whole body if PHP has already ended the response, else None (stream it)."""
        if not self._finished:
            return None
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def wait_done(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        if self._done is None:
            self._done = self._loop.create_future()
        return await self._done

    def extend(self, seconds: float | None) -> None:
        """A new deadline from now (SSE_TIMEOUT for event streams); None removes it."""
        self.deadline = 0.0 if seconds is None else self._loop.time() + seconds
        self.timeout = seconds

    def _check_expired(self) -> None:
        if self.expired:
            raise TimeoutError("the PHP request ran past its deadline")

    def _expire(self) -> None:
        """Called by the pool's sweep: stop the script and wake whoever waits on it."""
        self.expired = True
        self.interrupt()
        self._wake(self._head, False)
        self._wake(self._waiter)
        self._wake(self._space)

    def cancel(self) -> None:
        """The client is gone: PHP stops at its next write (unless ignore_user_abort)."""
        if self.outcome is None:
            binding.lib.pg_cancel(self.handle)

    def interrupt(self) -> None:
        """The gateway's request timeout: stop the script as max_execution_time would."""
        if self.outcome is None:
            binding.lib.pg_interrupt(self.handle)

    # --- events from the bridge (called by the pool's reader) --------------------------

    def _wake(self, fut: asyncio.Future[Any] | None, value: Any = None) -> None:
        if fut is not None and not fut.done():
            fut.set_result(value)

    def _on_headers(self, status: int, block: bytes, started: float) -> None:
        self.status = status
        self.started = started
        if self.record is not None:
            self.record.php_started = started
        headers = self.headers
        for line in block.split(b"\0"):
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.strip().lower(), value.strip()))
        head = self._head
        if head is not None:
            self._head = None  # woken: the finish and done events that follow skip it
            self._wake(head, True)

    def _on_interim(self, status: int, block: bytes) -> None:
        headers: Headers = []
        for line in block.split(b"\0"):
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.strip().lower(), value.strip()))
        if self._interims is None:
            self._interims = deque()
        self._interims.append((status, headers))
        self._wake(self._head, None)

    def _on_heartbeat(self, seconds: float) -> None:
        """gateway_request_heartbeat(): the deadline moves out (never in); none stays none."""
        if self.deadline:
            self.deadline = max(self.deadline, self._loop.time() + seconds)

    def _on_body(self, data: bytes) -> None:
        self._chunks.append(data)
        if self._waiter is not None:
            self._wake(self._waiter)

    def _on_flush(self) -> None:
        self._flush = True
        self._wake(self._waiter)

    def _on_finish(self) -> None:
        self._finished = True
        if self._head is not None:
            self._wake(self._head, False)
        if self._waiter is not None:
            self._wake(self._waiter)

    def _on_done(self, code: int, flags: int, started: float, ended: float) -> None:
        self.started, self.ended = started, ended
        record = self.record
        if record is not None:
            record.php_started, record.php_ended = started, ended
            if record.php_span is not None:
                end_php_span(record, bool(flags & _FATAL), bool(flags & _DONE_TIMED_OUT))
        self.outcome = _outcome(code, flags)
        self._finished = True
        # inline checks: on this path most futures are None (a call each otherwise)
        if self._head is not None:
            self._wake(self._head, False)
        if self._waiter is not None:
            self._wake(self._waiter)
        if self._space is not None:
            self._wake(self._space)
        if self._done is not None:
            self._wake(self._done, self.outcome)


class PhpPool:
    """The process's PHP thread pool (libphp allows one per process)."""

    def __init__(self, options: PoolOptions) -> None:
        self.options = options
        self._calls: dict[int, PhpCall] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._events: Any = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.started = False
        # kept here (one pool per process) for the metrics; counted by the PHP stage
        self.timeouts = 0
        self.sse_streams = 0
        self.fatals = 0  # PHP fatal errors, not counting those a REQUEST_TIMEOUT interrupt made
        self.php_errors: deque[dict[str, Any]] = deque(maxlen=20)  # the last, for /status
        self.wait_seconds = Histogram(QUEUE_BUCKETS)  # submitted -> a thread took it
        self.run_seconds = Histogram(LATENCY_BUCKETS)  # taken -> done

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Starts PHP and its threads; blocks until they serve (tens of milliseconds)."""
        lib, ffi = binding.lib, binding.ffi
        opts = self.options
        ini_entries = build_ini_entries(opts.ini_set)
        keep = [ffi.new("char[]", ini_entries.encode())]
        if opts.ini_path is not None:
            keep.append(ffi.new("char[]", str(opts.ini_path).encode()))
        worker_script = worker_vars = ffi.NULL
        if opts.worker_script is not None and opts.worker_threads:
            worker_script = ffi.new("char[]", str(opts.worker_script).encode())
            worker_vars = ffi.new("char[]", opts.worker_vars)
            keep += [worker_script, worker_vars]
        cfg = ffi.new(
            "pg_config *",
            {
                "threads": opts.threads,
                "queue_capacity": opts.queue_capacity,
                "ini_path": keep[1] if opts.ini_path is not None else ffi.NULL,
                "ini_entries": keep[0],
                "body_buffer_bytes": opts.body_buffer_bytes,
                "response_buffer_bytes": opts.response_buffer_bytes,
                "thread_stack_bytes": opts.thread_stack_bytes,
                "worker_script": worker_script,
                "worker_vars": worker_vars,
                "worker_vars_len": len(opts.worker_vars) if worker_vars != ffi.NULL else 0,
                "worker_threads": opts.worker_threads if worker_script != ffi.NULL else 0,
                "worker_max_requests": opts.worker_max_requests,
                "max_requests": opts.max_requests,
                "request_timeout": opts.request_timeout or 0.0,
                "heartbeat_max": opts.heartbeat_max or 0.0,
            },
        )
        err = ffi.new("char[]", 512)
        if lib.pg_start(cfg, err, 512) != 0:
            raise RuntimeError(f"PHP failed to start: {ffi.string(err).decode(errors='replace')}")
        self._fd = lib.pg_event_fd()
        self._events = ffi.new("pg_event[]", _POLL_BATCH)
        self.started = True
        # Start-up log lines (extension load warnings) are waiting already.
        self._drain()
        with contextlib.suppress(RuntimeError):  # no loop yet: the first submit attaches
            self._attach()  # worker scripts log while no request comes (a boot that fails)

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            loop.add_reader(self._fd, self._on_readable)
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
            self._loop = loop
        return loop

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for call in self._calls.values():
            if call.deadline and now >= call.deadline and not call.expired:
                call._expire()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def stop(self, grace: float = 0.5) -> None:
        """Lets running scripts end (worker scripts leave their loops), interrupts those
        still running `grace` seconds later, then shuts PHP down."""
        if not self.started:
            return
        self.started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        binding.lib.pg_stop(grace)
        self._drain()

    def stats(self) -> PoolStats:
        s = binding.ffi.new("pg_stats *")
        binding.lib.pg_get_stats(s)
        return PoolStats(s.threads, s.threads_alive, s.busy, s.queued, s.requests, s.fatals,
                         s.rejected, self.timeouts, self.sse_streams, s.workers_failing,
                         s.worker_restarts, s.thread_restarts, s.logs_dropped)

    def threads(self) -> list[tuple[PhpCall | None, float]]:
        """Each PHP thread's request (None: idle) and when it took it (time.monotonic())."""
        if not self.started:
            return []
        out = binding.ffi.new("pg_thread[]", self.options.threads)
        n = binding.lib.pg_get_threads(out, self.options.threads)
        return [(self._calls.get(out[i].handle) if out[i].handle >= 0 else None,
                 out[i].started) for i in range(n)]

    def calls(self) -> list[PhpCall]:
        """Requests queued or running."""
        return list(self._calls.values())

    # --- requests ---------------------------------------------------------------------

    def submit(self, req: PhpRequest, timeout: float | None = None) -> PhpCall:
        """Queues the request; `timeout` seconds later (checked by a sweep every
        SWEEP_INTERVAL) the script is interrupted and waiting calls raise TimeoutError."""
        loop = self._attach()
        lib, ffi = binding.lib, binding.ffi
        content_type = cookie = authorization = None
        merged = _merge_headers(req.headers)
        for name, value in merged:
            if name == b"content-type":
                content_type = value
            elif name == b"cookie":
                cookie = value
            elif name == b"authorization":
                authorization = value
        vars_blob = req.server_vars
        headers_blob = b"\0".join(chain.from_iterable(merged)) + b"\0" if merged else b""
        null = ffi.NULL
        handle = lib.pg_submit_args(
            req.method,
            req.request_uri,
            req.query_string,
            req.script_filename,
            null if content_type is None else content_type,
            -1 if req.content_length is None else req.content_length,
            null if cookie is None else cookie,
            null if authorization is None else authorization,
            req.proto_num,
            req.request_time,
            vars_blob,
            len(vars_blob),
            headers_blob or null,
            len(headers_blob),
            req.body or null,
            len(req.body),
            1 if req.body_complete else 0,
            1 if req.worker else 0,
        )
        if handle == lib.PG_OVERLOADED:
            raise Overloaded("PHP threads busy and the queue is full")
        if handle == lib.PG_UNAVAILABLE:
            raise Unavailable("no worker script is running")
        if handle < 0:
            raise PoolStopped("the PHP pool is not running")
        call = PhpCall(handle, self, loop)
        call.submitted = time.monotonic()
        record = current_record.get()
        if record is not None:
            record.php_submitted = call.submitted
            call.record = record
        call._body_closed = req.body_complete
        if timeout is not None:
            call.deadline = loop.time() + timeout
            call.timeout = timeout
        self._calls[handle] = call
        return call

    # --- bridge events ----------------------------------------------------------------

    def _on_readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self._drain()

    def _drain(self) -> None:
        lib, ffi = binding.lib, binding.ffi
        events = self._events
        calls = self._calls
        unpack = ffi.unpack
        while True:
            n = lib.pg_poll(events, _POLL_BATCH)
            for i in range(n):
                ev = events[i]
                kind = ev.type
                handle = ev.handle
                call = calls.get(handle)
                # the usual order of a request's events: its head (often with the whole
                # body: _LAST), body, done
                if kind == _EV_HEADERS:
                    if call is not None:
                        call._on_headers(ev.code, unpack(ev.data, ev.len), ev.started)
                        if ev.flags & _LAST:
                            call._on_finish()
                elif kind == _EV_BODY:
                    if call is not None:
                        call._on_body(unpack(ev.data, ev.len))
                        if ev.flags & _LAST:
                            call._on_finish()
                elif kind == _EV_DONE:
                    calls.pop(handle, None)
                    code, flags, started, ended = ev.code, ev.flags, ev.started, ev.ended
                    if code and not flags & _LOGGED_ENDS:
                        # exit(N): php-fpm keeps the HTTP status too, but says so
                        log.warning("script exited with a non-zero status", exit_status=code,
                                    **_request_fields(call))
                    if flags & _FATAL_OR_TIMEOUT == _FATAL:
                        self.fatals += 1
                    if started:
                        if call is not None:
                            self.wait_seconds.observe(max(0.0, started - call.submitted))
                        self.run_seconds.observe(ended - started)
                    if call is not None:
                        call._on_done(code, flags, started, ended)
                elif kind == _EV_FLUSH:
                    if call is not None:
                        call._on_flush()
                elif kind == _EV_FINISH:
                    if call is not None:
                        call._on_finish()
                elif kind == _EV_BODY_SPACE:
                    if call is not None:
                        call._wake(call._space)
                elif kind == _EV_HEARTBEAT:
                    if call is not None:
                        call._on_heartbeat(ev.code / 1000)
                elif kind == _EV_INTERIM:
                    if call is not None:
                        call._on_interim(ev.code, unpack(ev.data, ev.len))
                elif kind == _EV_LOG:
                    message = unpack(ev.data, ev.len).decode("utf-8", "replace")
                    if call is not None and call.expired and message.startswith(_PHP_TIMEOUT):
                        continue  # the PHP stage logged the timeout, with the one that applied
                    _log_php(message, ev.code, call, self.php_errors)
            if n:
                lib.pg_free_events(events, n)
            if n < _POLL_BATCH:
                return


def _request_fields(call: PhpCall | None) -> dict[str, str]:
    record = call.record if call is not None else None
    if record is None:
        return {}
    return {"uri": record.uri, "request_id": record.request_id, "trace_id": record.trace_id}


def _log_php(message: str, syslog_level: int, call: PhpCall | None,
             errors: deque[dict[str, Any]]) -> None:
    """One of PHP's messages (error_log, warnings, fatals) as a log line of the request;
    errors are also kept for /status."""
    level = _SYSLOG_LEVELS.get(syslog_level, "error")
    fields: dict[str, str] = {"source": "php"}
    if message.startswith(_PHP_PREFIX):
        php_level, sep, text = message[len(_PHP_PREFIX):].partition(":")
        if sep and len(php_level) < 24:
            fields["php_level"] = php_level
            message = text.strip()
    ids = _request_fields(call)
    getattr(log, level)(message, **fields, **ids)
    if level in ("error", "critical"):
        errors.append({"time": time.time(), "message": message[:300],
                       "php_level": fields.get("php_level", ""), **ids})


def _merge_headers(headers: Headers) -> Headers:
    """Repeated header fields joined as nginx does: ", " between values, "; " for cookies
    (HTTP/2 and HTTP/3 clients send one cookie field per crumb)."""
    if len(dict(headers)) == len(headers):  # no name twice; dict() is one C call, no frame
        return headers
    merged: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        merged.setdefault(name, []).append(value)
    out: Headers = []
    for name, values in merged.items():
        out.append((name, (b"; " if name == b"cookie" else b", ").join(values)))
    return out


def build_ini_entries(ini_set: tuple[tuple[str, str], ...]) -> str:
    """INI lines applied after php.ini: what a web SAPI must have, then the user's values."""
    from gateway.php import _buildinfo  # written at build time: the libphp install

    lines = [
        f'extension_dir="{_buildinfo.PHP_EXTENSION_DIR}"',
        "zend_extension=opcache",
        # $_SERVER stays just-in-time; argv has no meaning for a web request
        "register_argc_argv=0",
    ]
    for key, value in ini_set:
        lines.append(f"{key}={_quote_ini(value)}")
    return "\n".join(lines) + "\n"


def _quote_ini(value: str) -> str:
    if value == "" or any(c in value for c in ' ;#"=&|^!~()[]{}$'):
        return '"' + value.replace('"', '\\"') + '"'
    return value
