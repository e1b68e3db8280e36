"""HTTP/2 over an asyncio transport: drives the sans-IO Http2Connection, one app task per
stream, flow control in both directions, GOAWAY on drain, stream resets cancel the app."""

from __future__ import annotations

import asyncio
from typing import cast

import h2.errors

from gateway.protocol.events import Body, EndBody, Headers, Request, StreamReset
from gateway.protocol.http2 import ConnectionClosed, H2Event, Http2Connection, WindowOpened
from gateway.server.connection import ServerState, log
from gateway.server.request_body import RequestBody

# once this much body is queued in h2 it is written at once; less waits for the end of the
# loop pass, so that the responses of concurrent streams share one write
_FLUSH_NOW_BYTES = 65536


class H2Context(RequestBody):
    """The RequestContext of one HTTP/2 stream (see gateway/pipeline/context.py)."""

    __slots__ = (
        "_proto", "_window_waiter", "client", "disconnected", "done", "running", "server",
        "started", "stream_id", "task", "tls",
    )

    _GONE = "stream reset or connection closed"

    def __init__(self, proto: H2Protocol, request: Request) -> None:
        # the body queue is bounded by the 64 KiB stream window we grant
        RequestBody.__init__(self, request)
        self.stream_id = request.stream_id
        self.client = proto.client
        self.server = proto.server
        self.tls = proto.tls
        self.disconnected = asyncio.Event()
        self.started = False
        self.done = False
        self.running = False  # the app task has taken its first step
        self.task: asyncio.Task[None] | None = None
        self._proto = proto
        self._window_waiter: asyncio.Future[None] | None = None

    # the request body's hooks (gateway/server/request_body.py)

    def _consumed(self, size: int) -> None:
        self._proto.consumed(self.stream_id, size)

    def _wait_begins(self) -> asyncio.TimerHandle:
        proto = self._proto
        return proto.loop.call_later(proto.state.settings.body_timeout, proto.body_timed_out, self)

    def _wake(self) -> None:
        RequestBody._wake(self)
        self._window_opened()  # a send waiting for window looks again (and sees a reset)

    def _window_opened(self) -> None:
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the rest of the RequestContext API

    async def send_response(self, status: int, headers: Headers) -> None:
        if self.disconnected.is_set():
            return
        if self.done:
            raise RuntimeError("this stream's response is already finished")
        self._proto.conn.send_response(self.stream_id, status, headers)
        self.started = True
        self._proto.flush_soon()

    async def send_data(self, data: bytes) -> None:
        proto = self._proto
        conn = proto.conn
        # a large body leaves in 16 KiB frames: slices of a view copy nothing
        rest: bytes | memoryview = memoryview(data) if len(data) > 16384 else data
        while rest and not self.disconnected.is_set():
            taken = conn.send_data(self.stream_id, rest)
            if taken:
                # frames of many streams leave together, in one TLS write and syscall
                proto.unflushed += taken
                if proto.unflushed >= _FLUSH_NOW_BYTES:
                    proto.flush()
                else:
                    proto.flush_soon()
                rest = rest[taken:] if taken < len(rest) else b""
                if proto.write_paused:
                    await proto.wait_writable()
            else:
                await self._wait_window()

    async def _wait_window(self) -> None:
        proto = self._proto
        waiter = proto.loop.create_future()
        self._window_waiter = waiter
        timer = proto.loop.call_later(
            proto.state.settings.send_timeout, proto.abort_stream, self,
            h2.errors.ErrorCodes.CANCEL,
        )
        try:
            await waiter
        finally:
            timer.cancel()
            self._window_waiter = None

    async def end(self) -> None:
        if self.disconnected.is_set() or self.done:
            return
        proto = self._proto
        proto.conn.end_stream(self.stream_id)
        self.done = True
        proto.flush_soon()
        proto.state.requests_served += 1


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection; created by H1Protocol on ALPN h2, prior knowledge or h2c."""

    def __init__(self, state: ServerState, tls: bool) -> None:
        settings = state.settings
        self.state = state
        self.loop = state.loop
        self.tls = tls
        self.conn = Http2Connection(
            defaults=state.defaults,
            scheme="https" if tls else "http",
            max_concurrent_streams=settings.h2_max_concurrent_streams,
            max_header_list_size=settings.h2_max_header_list_size,
            max_body_bytes=settings.body_limit,
            rapid_reset_limit=settings.h2_rapid_reset_limit,
            rapid_reset_window=settings.h2_rapid_reset_window,
        )
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        self.unflushed = 0  # body bytes queued in h2 since the last flush
        self._streams: dict[int, H2Context] = {}
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False
        self._requested = False
        self._registered = False

    # -- start and transport callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Only for direct use; normally H1Protocol hands over with start()."""
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.state.opened(self)
        self.start(
            transport,
            (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0),
            (str(local[0]), int(local[1])) if isinstance(local, tuple) else ("", 0),
        )

    def start(
        self,
        transport: asyncio.Transport,
        client: tuple[str, int],
        server: tuple[str, int],
        data: bytes = b"",
        upgrade: tuple[bytes, Request] | None = None,
    ) -> None:
        """Begin HTTP/2 on a transport that is already connected (already registered)."""
        self.transport = transport
        self.client = client
        self.server = server
        self._registered = True
        self.state.http2_connections += 1
        if upgrade is not None:
            self._handle(self.conn.initiate_upgrade(*upgrade))
        else:
            self.conn.initiate()
        self.flush()
        if self.state.draining:
            self.shutdown()
        if not self._streams and not self._closing:
            self._arm_idle()
        if data and not self._closing:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._handle(self.conn.receive_data(data))
        self.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for ctx in list(self._streams.values()):
            self._stop(ctx)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._registered:
            self._registered = False
            self.state.http2_connections -= 1
            self.state.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        # a peer that does not read must not make us queue endless PING/SETTINGS acks
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- events ----------------------------------------------------------------------------

    def _handle(self, events: list[H2Event]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, Body):
                ctx = streams.get(event.stream_id)
                if ctx is not None:
                    ctx._feed(event.data)
                else:
                    self.conn.acknowledge(event.stream_id, len(event.data))
            elif isinstance(event, Request):
                self._start_stream(event)
            elif isinstance(event, EndBody):
                ctx = streams.get(event.stream_id)
                if ctx is not None:
                    ctx._end_body()
            elif isinstance(event, WindowOpened):
                if event.stream_id == 0:
                    for ctx in streams.values():
                        ctx._window_opened()
                else:
                    ctx = streams.get(event.stream_id)
                    if ctx is not None:
                        ctx._window_opened()
            elif isinstance(event, StreamReset):
                ctx = streams.get(event.stream_id)
                if ctx is not None:
                    self._stop(ctx)
            elif isinstance(event, ConnectionClosed):
                # h2 sends nothing more once the connection is over: stop the apps now
                for ctx in list(streams.values()):
                    self._stop(ctx)
                self._close_transport()
                return

    def _start_stream(self, request: Request) -> None:
        self._requested = True
        self._cancel_timer()
        ctx = H2Context(self, request)
        self._streams[request.stream_id] = ctx
        ctx.task = self.loop.create_task(self._run(ctx), context=self.state.context.copy())

    def _stop(self, ctx: H2Context) -> None:
        """The stream is gone (peer reset, limit, connection lost): stop its app."""
        ctx.disconnected.set()
        ctx._wake()
        # a task cancelled before its first step would skip _run's cleanup; it sees
        # `disconnected` instead
        if ctx.task is not None and ctx.running and not ctx.done:
            ctx.task.cancel()

    def consumed(self, stream_id: int, size: int) -> None:
        self.conn.acknowledge(stream_id, size)
        self.flush_soon()

    # -- the app ---------------------------------------------------------------------------

    async def _run(self, ctx: H2Context) -> None:
        ctx.running = True
        if ctx.disconnected.is_set():  # reset before the app even started
            self._stream_finished(ctx)
            return
        failed = False
        self.state.active_requests += 1
        try:
            await self.state.app(ctx)
        except asyncio.CancelledError:
            pass  # we cancelled it: the stream or the connection is gone
        except Exception:
            if not ctx.disconnected.is_set():
                failed = True
                log.exception("app failed", method=ctx.request.method.decode("latin-1"),
                              target=ctx.request.target.decode("latin-1"))
        finally:
            self.state.active_requests -= 1
        conn = self.conn
        if not self._closing and not ctx.disconnected.is_set() and not ctx.done:
            if not ctx.started:
                conn.send_response(ctx.stream_id, 500, [(b"content-length", b"0")])
                conn.end_stream(ctx.stream_id)
                self.state.requests_served += 1
            else:
                if not failed:
                    log.error("app returned without finishing its response",
                              target=ctx.request.target.decode("latin-1"))
                conn.reset(ctx.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            ctx.done = True
        self._stream_finished(ctx)

    def _stream_finished(self, ctx: H2Context) -> None:
        self._streams.pop(ctx.stream_id, None)
        if self._closing:
            return
        # body the app never read: give the connection window back
        self.conn.acknowledge(ctx.stream_id, ctx._discard_unread())
        self.conn.stream_finished(ctx.stream_id)
        if not self._streams:
            if self.conn.draining:
                self.conn.close()
                self._close_transport()
                return
            self._arm_idle()
        self.flush_soon()

    def body_timed_out(self, ctx: H2Context) -> None:
        if not ctx.started and not ctx.done:
            self.conn.send_response(ctx.stream_id, 408, [(b"content-length", b"0")])
            self.conn.end_stream(ctx.stream_id)
            ctx.started = ctx.done = True
        self.abort_stream(ctx, h2.errors.ErrorCodes.CANCEL)

    def abort_stream(self, ctx: H2Context, error_code: int) -> None:
        """Our side gives up on a stream (timeouts): reset it and stop the app."""
        if not ctx.done:
            self.conn.reset(ctx.stream_id, error_code)
        self._stop(ctx)
        self.flush()

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> None:
        self.unflushed = 0
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self._closing:
            self.transport.write(data)

    def flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon_cb)

    def _flush_soon_cb(self) -> None:
        self._flush_handle = None
        self.flush()

    async def wait_writable(self) -> None:
        while self.write_paused and not self._closing:
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self.loop.create_future()
            timer = self.loop.call_later(self.state.settings.send_timeout, self.abort)
            try:
                await waiter
            finally:
                timer.cancel()

    # -- timers, drain, closing ------------------------------------------------------------

    def _arm_idle(self) -> None:
        self._cancel_timer()
        settings = self.state.settings
        delay = settings.idle_timeout if self._requested else settings.header_timeout
        self._timer = self.loop.call_later(delay, self._idle_timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timed_out(self) -> None:
        self._timer = None
        if not self._streams:
            self.conn.close()
            self._close_transport()

    def _close_transport(self) -> None:
        if self._closing:
            return
        self.flush()
        self._closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        if self._closing:
            return
        self.conn.start_drain()
        if self.conn.closed:
            self._close_transport()
        else:
            self.flush()

    def abort(self) -> None:
        for ctx in list(self._streams.values()):
            self._stop(ctx)
        self._closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()
