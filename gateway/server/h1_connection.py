"""HTTP/1.1 over an asyncio transport: drives the sans-IO H1Connection, runs one app task
per request, applies backpressure both ways and a timeout to every phase."""

from __future__ import annotations

import asyncio
from typing import Final, cast

from gateway.protocol.events import Body, EndBody, Headers, ProtocolError, Request
from gateway.protocol.http1 import H1Connection, SwitchToH2, Wait
from gateway.server.connection import (
    BODY_HIGH_WATER,
    LINGER_SECONDS,
    READ_HIGH_WATER,
    ServerState,
    log,
)
from gateway.server.request_body import RequestBody

_NO_TIMER, _HEAD_TIMER, _IDLE_TIMER, _LINGER_TIMER = range(4)
_EMPTY: Final = b""
_JOIN_UP_TO: Final = 8192  # a head and a body up to this size are joined into one write


class H1Context(RequestBody):
    """The RequestContext of one HTTP/1 request (see gateway/pipeline/context.py)."""

    __slots__ = ("_proto", "client", "disconnected", "server", "tls")

    _GONE = "the request is over: client gone or body abandoned"

    def __init__(self, proto: H1Protocol, request: Request) -> None:
        RequestBody.__init__(self, request)
        self.client = proto.client
        self.server = proto.server
        self.tls = proto.tls
        self.disconnected = proto.disconnected  # one request at a time: the connection's event
        self._proto = proto

    # the request body's hooks (gateway/server/request_body.py)

    def _consumed(self, size: int) -> None:
        proto = self._proto
        if proto.body_blocked and self._buffered < BODY_HIGH_WATER and proto.current(self):
            proto.unblock_body()

    def _readable(self) -> bool:
        return not self.disconnected.is_set() and self._proto.current(self)

    def _wait_begins(self) -> None:
        self._proto.want_body(self)

    def _wait_over(self, timer: asyncio.TimerHandle | None) -> None:
        self._proto.body_wait_over()

    # the rest of the RequestContext API

    def _usable(self) -> bool:
        """False once the client is gone; raises if the app writes after its own end()."""
        if self.disconnected.is_set():
            return False
        if not self._proto.current(self):
            raise RuntimeError("this request's response is already finished")
        return True

    async def send_response(self, status: int, headers: Headers) -> None:
        if self._usable():
            self._proto.write_soon(self._proto.conn.send_response(status, headers))

    async def send_data(self, data: bytes) -> None:
        proto = self._proto
        if not self._usable():
            return
        out = proto.conn.send_data(data)
        if out:
            proto.write_now(out)
            if proto.write_paused:
                await proto.wait_writable()

    async def end(self) -> None:
        proto = self._proto
        if not self._usable():
            return
        proto.write_now(proto.conn.send_end())
        proto.response_complete(self)


class H1Protocol(asyncio.Protocol):
    """One HTTP/1.x connection (cleartext or TLS); may hand itself over to HTTP/2."""

    def __init__(self, state: ServerState, tls: bool) -> None:
        settings = state.settings
        self.state = state
        self.loop = state.loop
        self.tls = tls
        self.conn = H1Connection(
            parser=settings.http1_parser,
            defaults=state.defaults,
            scheme="https" if tls else "http",
            max_request_line=settings.max_request_line,
            max_header_bytes=settings.max_header_bytes,
            max_body_bytes=settings.body_limit,
            allow_h2=not tls,  # TLS picks HTTP/2 by ALPN only
        )
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.disconnected = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.body_blocked = False
        self.write_paused = False
        self._ctx: H1Context | None = None
        self._task: asyncio.Task[None] | None = None
        self._task_running = False
        self._read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = _NO_TIMER
        self._body_timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False
        self._registered = False

    # -- transport callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if isinstance(local, tuple):
            self.server = (str(local[0]), int(local[1]))
        if self.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._switch_to_h2(SwitchToH2(data=b""), register=True)
                return
        self._registered = True
        self.state.opened(self)
        if self.state.draining:
            self._close(linger=False)
            return
        self._arm(_HEAD_TIMER)  # the first request must arrive in time (slowloris)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering close: discard
        self.conn.receive_data(data)
        if self._timer_kind == _IDLE_TIMER:
            self._cancel_timer()  # _process arms header_timeout if the head is still partial
        self._process()

    def eof_received(self) -> bool | None:
        return None  # like nginx: a half-close means the client is gone; close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timers()
        self.disconnected.set()
        ctx = self._ctx
        if ctx is not None:
            ctx._wake()
            if self._task is not None and self._task_running and not self.conn.response_done:
                self._task.cancel()  # the response can never complete: stop the app
        self._ctx = None
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._registered:
            self._registered = False
            self.state.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def current(self, ctx: H1Context) -> bool:
        return ctx is self._ctx

    # -- reading -------------------------------------------------------------------------------

    def _process(self) -> None:
        if self._closing:
            return  # e.g. a pipelined request scheduled before the connection went away
        conn = self.conn
        while not self.body_blocked:
            event = conn.next_event()
            kind = type(event)
            if kind is Body:
                assert isinstance(event, Body) and self._ctx is not None
                self._ctx._feed(event.data)
                if self._ctx._buffered >= BODY_HIGH_WATER:
                    self.body_blocked = True
            elif kind is Request:
                assert isinstance(event, Request)
                self._start(event)
            elif kind is EndBody:
                if self._ctx is not None:
                    self._ctx._end_body()
            elif event is Wait.NEED_DATA:
                if conn.awaiting_head and conn.buffered and self._timer_kind != _HEAD_TIMER:
                    self._arm(_HEAD_TIMER)
                break
            elif event is Wait.PAUSED:
                break
            elif kind is ProtocolError:
                assert isinstance(event, ProtocolError)
                self._protocol_error()
                return
            else:
                assert isinstance(event, SwitchToH2)
                self._switch_to_h2(event, register=False)
                return
        transport = self.transport
        if transport is None:
            return
        if conn.buffered > READ_HIGH_WATER:
            if not self._read_paused:
                self._read_paused = True
                transport.pause_reading()
        elif self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _start(self, request: Request) -> None:
        if self._timer_kind != _NO_TIMER:
            self._cancel_timer()
        ctx = H1Context(self, request)
        self._ctx = ctx
        self._task_running = False
        self._task = self.loop.create_task(self._run(ctx), context=self.state.context.copy())

    def want_body(self, ctx: H1Context) -> None:
        """The app waits for body bytes: ask for them (100 Continue) and time the wait."""
        interim = self.conn.continue_response()
        if interim:
            self.write_now(interim)
        if self.body_blocked:
            self.unblock_body()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(
                self.state.settings.body_timeout, self._body_timed_out
            )

    def body_wait_over(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def unblock_body(self) -> None:
        self.body_blocked = False
        self._process()

    # -- writing -------------------------------------------------------------------------------

    def write_soon(self, data: bytes) -> None:
        """Queue bytes; they leave with the next write_now or at the end of this loop pass."""
        self._pending.append(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def write_now(self, data: bytes) -> None:
        pending = self._pending
        if pending:
            pending.append(data)
            if len(data) > _JOIN_UP_TO and self.transport is not None and not self._closing:
                self.transport.writelines(pending)  # one writev, no copy of a large body
                pending.clear()
                return
            data = _EMPTY.join(pending)
            pending.clear()
        if data and self.transport is not None and not self._closing:
            self.transport.write(data)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._pending:
            self.write_now(_EMPTY)

    async def wait_writable(self) -> None:
        """Backpressure: return once the transport buffer is below its low-water mark."""
        while self.write_paused and not self.disconnected.is_set():
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self.loop.create_future()
            timer = self.loop.call_later(self.state.settings.send_timeout, self._send_timed_out)
            try:
                await waiter
            finally:
                timer.cancel()

    def response_complete(self, ctx: H1Context) -> None:
        if ctx is not self._ctx:
            return
        self.state.requests_served += 1
        self._ctx = None
        self.body_wait_over()
        conn = self.conn
        unread = conn.reading_body or conn.buffered > 0
        if not conn.start_next_cycle():
            self._close(linger=unread)
            return
        self.body_blocked = False
        if conn.buffered:
            self._arm(_HEAD_TIMER)
            # a pipelined request starts from a clean callback, not inside this app task
            self.loop.call_soon(self._process, context=self.state.context)
        else:
            self._arm(_IDLE_TIMER)
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()

    # -- the app ----------------------------------------------------------------------------

    async def _run(self, ctx: H1Context) -> None:
        if ctx is not self._ctx or self.disconnected.is_set():
            return  # aborted before the app started
        self._task_running = True
        self.state.active_requests += 1
        failed = False
        try:
            await self.state.app(ctx)
        except asyncio.CancelledError:
            return  # we cancelled it: the client is gone or the request was aborted
        except Exception:
            if self.disconnected.is_set():
                return  # errors after the client left are expected, not worth a log line
            failed = True
            log.exception("app failed", method=ctx.request.method.decode("latin-1"),
                          target=ctx.request.target.decode("latin-1"))
        finally:
            self.state.active_requests -= 1
        if ctx is not self._ctx or self._closing:
            return
        conn = self.conn
        if not conn.response_started:
            self.write_now(conn.error_response(500))
            self.response_complete(ctx)
        elif not conn.response_done:
            if not failed:
                log.error("app returned without finishing its response",
                          target=ctx.request.target.decode("latin-1"))
            self.abort()  # part of a response is out: only closing tells the client

    # -- errors, timeouts, closing ------------------------------------------------------------

    def _protocol_error(self) -> None:
        self.write_now(self.conn.data_to_send())
        self._fail_request()
        self._close(linger=True)

    def _fail_request(self) -> None:
        """Stop the app of an unfinished request (bad body, timeout, drain deadline)."""
        ctx = self._ctx
        if ctx is None:
            return
        self.disconnected.set()
        ctx._wake()
        if self._task is not None and self._task_running and not self.conn.response_done:
            self._task.cancel()  # (a task that never started sees `disconnected` instead)
        self._ctx = None

    def _arm(self, kind: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        settings = self.state.settings
        delay = settings.idle_timeout if kind == _IDLE_TIMER else (
            LINGER_SECONDS if kind == _LINGER_TIMER else settings.header_timeout
        )
        self._timer_kind = kind
        self._timer = self.loop.call_later(delay, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = _NO_TIMER

    def _cancel_timers(self) -> None:
        self._cancel_timer()
        self.body_wait_over()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def _timed_out(self) -> None:
        kind = self._timer_kind
        self._timer = None
        self._timer_kind = _NO_TIMER
        if kind == _HEAD_TIMER and self.conn.buffered and not self.conn.response_started:
            self.write_now(self.conn.error_response(408))  # part of a head came, too slowly
        if kind == _LINGER_TIMER:
            if self.transport is not None:
                self.transport.close()
            return
        self._close(linger=False)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self.conn.response_started:
            self.write_now(self.conn.error_response(408))
        self._fail_request()
        self._close(linger=True)

    def _send_timed_out(self) -> None:
        self.abort()  # the client stopped reading

    def _close(self, linger: bool) -> None:
        """Close after what was written; with linger, half-close and read-and-discard
        for a moment so a client still sending does not get a reset instead of our reply."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timers()
        self._flush_now()
        transport = self.transport
        if transport is None:
            return
        if linger and transport.can_write_eof():
            transport.write_eof()
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
            self._timer_kind = _LINGER_TIMER
            self._timer = self.loop.call_later(LINGER_SECONDS, self._timed_out)
        else:
            transport.close()

    def _flush_now(self) -> None:
        if self._pending and self.transport is not None:
            self.transport.write(_EMPTY.join(self._pending))
            self._pending.clear()

    def _switch_to_h2(self, event: SwitchToH2, register: bool) -> None:
        from gateway.server.h2_connection import H2Protocol

        transport = self.transport
        assert transport is not None
        self._cancel_timers()
        self._closing = True  # this object is done; H2Protocol owns the transport now
        proto = H2Protocol(self.state, self.tls)
        if register:
            self.state.opened(proto)
        else:
            self.state.replaced(self, proto)
        self._registered = False
        transport.set_protocol(proto)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        if event.reply:
            transport.write(event.reply)
        upgrade = (event.settings, event.request) if event.request is not None else None
        proto.start(transport, self.client, self.server, event.data, upgrade)

    # -- drain ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.conn.shutdown()
        if self._ctx is None and self.conn.idle and not self._closing:
            self._close(linger=False)

    def abort(self) -> None:
        self._fail_request()
        self._closing = True
        self._cancel_timers()
        if self.transport is not None:
            self.transport.abort()
