"""HTTP/3 over one QUIC connection: drives the sans-IO Http3Connection from the UDP server,
runs one app task per request stream, applies backpressure both ways and a timeout to every
phase. gateway/server/quic.py owns the socket and routes datagrams here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

from aioquic.h3.connection import ErrorCode
from aioquic.quic.connection import NetworkAddress

from gateway.protocol.events import Body, EndBody, Headers, Request, StreamReset
from gateway.protocol.http3 import (
    CidIssued,
    CidRetired,
    ConnectionClosed,
    Http3Connection,
)
from gateway.protocol.response_headers import REASONS
from gateway.server.connection import ServerState, log
from gateway.server.request_body import RequestBody

MAX_RECEIVE_CHUNK: Final = 64 * 1024  # receive() joins QUIC packets' worth of body up to this
MAX_SEND_PIECE: Final = 64 * 1024  # send_data() hands a large body to QUIC in slices
PING_EVERY: Final = 15.0  # keep-alive while requests run, so a silent PHP script is not idle


class QuicEndpoint(Protocol):
    """What a connection needs from the UDP server that owns the socket."""

    def sendto(self, data: bytes, addr: NetworkAddress) -> None: ...

    @property
    def write_paused(self) -> bool: ...

    def route(self, cid: bytes, conn: H3Session) -> None: ...

    def unroute(self, cid: bytes) -> None: ...

    def forget(self, conn: H3Session) -> None: ...


class H3Context(RequestBody):
    """The RequestContext of one HTTP/3 request stream (see gateway/pipeline/context.py)."""

    __slots__ = (
        "_conn", "_ended", "_started", "_task", "client", "disconnected", "server", "stream_id",
        "tls",
    )

    _JOIN_UP_TO = MAX_RECEIVE_CHUNK
    _GONE = "the request stream was reset or the connection lost"

    def __init__(self, conn: H3Session, request: Request) -> None:
        RequestBody.__init__(self, request)
        self.stream_id = request.stream_id
        self.client = conn.client
        self.server = conn.server
        self.tls = True
        self.disconnected = asyncio.Event()
        self._conn = conn
        self._started = False
        self._ended = False
        self._task: asyncio.Task[None] | None = None

    # the request body's hooks (gateway/server/request_body.py)

    def _consumed(self, size: int) -> None:
        self._conn.consumed(self.stream_id, size)

    def _wait_begins(self) -> asyncio.TimerHandle:
        conn = self._conn
        return conn.loop.call_later(conn.state.settings.body_timeout, self._body_timed_out)

    def _body_timed_out(self) -> None:
        conn = self._conn
        if not self._started:
            self._started = self._ended = True
            conn.error_response(self.stream_id, 408)
        else:
            conn.reset(self.stream_id)
        self._fail()

    # fed by the connection

    def _fail(self) -> None:
        """The stream is over for us (peer reset, connection gone, timeout): stop the app."""
        if self.disconnected.is_set():
            return
        self.disconnected.set()
        self._wake()
        task = self._task
        if task is not None and not self._ended and task is not asyncio.current_task():
            task.cancel()

    # the rest of the RequestContext API

    async def send_response(self, status: int, headers: Headers) -> None:
        if self.disconnected.is_set():
            return
        if self._started:
            raise RuntimeError("response already started")
        self._conn.adapter.send_response(self.stream_id, status, headers)
        self._started = True
        self._conn.transmit_soon()

    async def send_data(self, data: bytes) -> None:
        if self.disconnected.is_set() or not data:
            return
        if not self._started or self._ended:
            raise RuntimeError("send_data outside a response")
        conn = self._conn
        adapter = conn.adapter
        stream_id = self.stream_id
        if not adapter.body_allowed(stream_id):
            return  # HEAD, 204, 304: the body is not sent
        for start in range(0, len(data), MAX_SEND_PIECE):
            piece = data if len(data) <= MAX_SEND_PIECE else data[start : start + MAX_SEND_PIECE]
            adapter.send_data(stream_id, piece)
            if adapter.send_backlog(stream_id) < conn.high_water:
                conn.transmit_soon()
                continue
            conn.transmit_now()  # the backlog may just need a push onto the wire
            if adapter.send_backlog(stream_id) >= conn.high_water:
                await conn.wait_sendable(self)
            if self.disconnected.is_set():
                return

    async def end(self) -> None:
        if self.disconnected.is_set() or self._ended:
            return
        if not self._started:
            raise RuntimeError("end() before send_response()")
        self._ended = True
        self._conn.adapter.end_stream(self.stream_id)
        self._conn.transmit_soon()


class H3Session:
    """One QUIC connection of the UDP server with its request streams."""

    def __init__(
        self,
        state: ServerState,
        endpoint: QuicEndpoint,
        adapter: Http3Connection,
        addr: NetworkAddress,
        server_addr: tuple[str, int],
        high_water: int,
    ) -> None:
        self.state = state
        self.loop = state.loop
        self.adapter = adapter
        self.endpoint = endpoint
        self.client: tuple[str, int] = (str(addr[0]), int(addr[1]))
        self.server = server_addr
        self.high_water = high_water
        self.low_water = high_water // 2
        self.streams: dict[int, H3Context] = {}
        self.cids: set[bytes] = set()
        self.handshaking = True
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._blocked: dict[H3Context, asyncio.Future[None]] = {}
        self._idle_since = self.loop.time()
        self._housekeeping: asyncio.TimerHandle | None = self.loop.call_later(
            self._housekeeping_delay(), self._keepalive
        )
        self._released = False  # no longer counted by ServerState (closed or closing)
        self._terminated = False
        self.on_handshake: Callable[[H3Session], None] | None = None

    # -- input ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self._terminated:
            return
        self.adapter.receive_datagram(data, addr, self.loop.time())
        self._handle_events()
        self.transmit_soon()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._terminated:
            return
        self.adapter.handle_timer(self.loop.time())
        self._handle_events()
        self.transmit_now()

    def _handle_events(self) -> None:
        adapter = self.adapter
        for event in adapter.events():
            if isinstance(event, Body):
                ctx = self.streams.get(event.stream_id)
                if ctx is not None:
                    ctx._feed(event.data)
            elif isinstance(event, Request):
                self._start(event)
            elif isinstance(event, EndBody):
                ctx = self.streams.get(event.stream_id)
                if ctx is not None:
                    ctx._end_body()
            elif isinstance(event, StreamReset):
                ctx = self.streams.get(event.stream_id)
                if ctx is not None:
                    ctx._fail()
                    self._unblock(ctx)
            elif isinstance(event, CidIssued):
                self.cids.add(event.cid)
                self.endpoint.route(event.cid, self)
            elif isinstance(event, CidRetired):
                self.cids.discard(event.cid)
                self.endpoint.unroute(event.cid)
            elif isinstance(event, ConnectionClosed):
                self._on_closed()
        if self.handshaking and adapter.handshake_complete:
            self.handshaking = False
            if self.on_handshake is not None:
                self.on_handshake(self)
        if adapter.closed and not self._released:
            self._release()

    def _start(self, request: Request) -> None:
        ctx = H3Context(self, request)
        self.streams[request.stream_id] = ctx
        self.state.active_requests += 1
        ctx._task = self.loop.create_task(self._run(ctx), context=self.state.context.copy())

    async def _run(self, ctx: H3Context) -> None:
        failed = False
        try:
            await self.state.app(ctx)
        except asyncio.CancelledError:
            pass  # we cancelled it: the client is gone or the request was aborted
        except Exception:
            if not ctx.disconnected.is_set():
                failed = True
                log.exception("app failed", protocol="HTTP/3",
                              method=ctx.request.method.decode("latin-1"),
                              target=ctx.request.target.decode("latin-1"))
        finally:
            self.state.active_requests -= 1
        stream_id = ctx.stream_id
        if not ctx.disconnected.is_set() and not self.adapter.closed:
            if not ctx._started:
                self.error_response(stream_id, 500)
            elif not ctx._ended:
                if not failed:
                    log.error("app returned without finishing its response", protocol="HTTP/3",
                              target=ctx.request.target.decode("latin-1"))
                self.adapter.reset(stream_id)  # part of a response is out: only a reset tells
            else:
                self.state.requests_served += 1
        self.streams.pop(stream_id, None)
        self._blocked.pop(ctx, None)
        self.adapter.stream_finished(stream_id)
        if not self.streams:
            self._idle_since = self.loop.time()
        self._handle_events()
        self.transmit_soon()

    # -- output --------------------------------------------------------------------------

    def transmit_soon(self) -> None:
        """Send what the adapter has at the end of this loop pass (coalesces many writes)."""
        if self._transmit_handle is None and not self._terminated:
            self._transmit_handle = self.loop.call_soon(self._transmit_scheduled)

    def _transmit_scheduled(self) -> None:
        self._transmit_handle = None
        self.transmit_now()

    def transmit_now(self) -> None:
        if self._terminated:
            return
        if self._transmit_handle is not None:
            self._transmit_handle.cancel()
            self._transmit_handle = None
        endpoint = self.endpoint
        for data, addr in self.adapter.datagrams_to_send(self.loop.time()):
            endpoint.sendto(data, addr)
        self._handle_events()  # sending issues connection IDs and completes closes
        self._arm_timer()
        if self._blocked and not endpoint.write_paused:
            self._wake_writers()

    def _arm_timer(self) -> None:
        at = self.adapter.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)

    def _wake_writers(self) -> None:
        backlog = self.adapter.send_backlog
        for ctx, waiter in list(self._blocked.items()):
            if backlog(ctx.stream_id) <= self.low_water and not waiter.done():
                waiter.set_result(None)

    def _unblock(self, ctx: H3Context) -> None:
        waiter = self._blocked.get(ctx)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_sendable(self, ctx: H3Context) -> None:
        """Backpressure: return once the stream's unsent bytes fall to the low-water mark."""
        waiter = self.loop.create_future()
        self._blocked[ctx] = waiter
        timer = self.loop.call_later(self.state.settings.send_timeout, self._send_timed_out, ctx)
        try:
            await waiter
        finally:
            timer.cancel()
            if self._blocked.get(ctx) is waiter:
                del self._blocked[ctx]

    def _send_timed_out(self, ctx: H3Context) -> None:
        self.reset(ctx.stream_id)  # the client stopped reading
        ctx._fail()
        self._unblock(ctx)

    def consumed(self, stream_id: int, size: int) -> None:
        self.adapter.acknowledge(stream_id, size)
        self.transmit_soon()  # the new credit goes out as MAX_STREAM_DATA

    def error_response(self, stream_id: int, status: int) -> None:
        body = b"%d %s\n" % (status, REASONS.get(status, b""))
        adapter = self.adapter
        try:
            adapter.send_response(
                stream_id, status,
                [(b"content-type", b"text/plain; charset=utf-8"),
                 (b"content-length", b"%d" % len(body))],
            )
            adapter.send_data(stream_id, body)
            adapter.end_stream(stream_id)
        except (KeyError, RuntimeError):
            return  # the stream is gone or already answered
        self.transmit_soon()

    def reset(self, stream_id: int) -> None:
        self.adapter.reset(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self.transmit_soon()

    # -- lifetime ------------------------------------------------------------------------

    def _housekeeping_delay(self) -> float:
        return min(PING_EVERY, self.state.settings.idle_timeout / 3)

    def _keepalive(self) -> None:
        """Ping while requests run (QUIC idle must not cut a slow script); close when idle."""
        self._housekeeping = None
        if self._terminated or self.adapter.closed:
            return
        now = self.loop.time()
        if self.streams:
            self.adapter.quic.send_ping(0)
            self.transmit_soon()
        elif now - self._idle_since >= self.state.settings.idle_timeout:
            self.adapter.close(ErrorCode.H3_NO_ERROR, "idle")
            self._handle_events()
            self.transmit_soon()
            return
        self._housekeeping = self.loop.call_later(self._housekeeping_delay(), self._keepalive)

    def _release(self) -> None:
        """Closing: stop counting for drain; stop every app still running."""
        self._released = True
        for ctx in list(self.streams.values()):
            ctx._fail()
            self._unblock(ctx)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            self._housekeeping = None
        self.state.closed(self)

    def _on_closed(self) -> None:
        if self._terminated:
            return
        if not self._released:
            self._release()
        self._terminated = True
        for handle in (self._timer, self._transmit_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._transmit_handle = None
        self.endpoint.forget(self)

    def shutdown(self) -> None:
        """Drain: GOAWAY; requests in flight finish; the connection closes when none is left."""
        self.adapter.start_drain()
        self._handle_events()
        self.transmit_now()

    def abort(self) -> None:
        """Drain deadline or server close: CONNECTION_CLOSE now and stop the apps."""
        if not self.adapter.closed:
            self.adapter.close(ErrorCode.H3_NO_ERROR, "server shutting down")
            self._handle_events()
        self.transmit_now()  # CONNECTION_CLOSE leaves now, also when decided earlier
        if not self._released:
            self._release()

    def terminate(self) -> None:
        """The socket is closing: forget the connection without waiting for its timers."""
        self.abort()
        self._on_closed()
