"""HTTP/3 over one QUIC connection: drives the sans-IO Http3Adapter from the UDP server, one
RequestStream per request stream (gateway/server/stream.py), backpressure both ways, keep-alive
and idle close. gateway/server/quic.py owns the socket and routes datagrams here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

from aioquic.h3.connection import ErrorCode
from aioquic.quic.connection import NetworkAddress

from gateway.protocol.events import Body, BodyTooLarge, EndBody, Headers, Request, StreamReset
from gateway.protocol.http3 import (
    CidIssued,
    CidRetired,
    ConnectionClosed,
    Http3Adapter,
)
from gateway.server.state import ServerState
from gateway.server.stream import RequestStream

MAX_SEND_PIECE: Final = 64 * 1024  # send_data() hands a large body to QUIC in slices
PING_EVERY: Final = 15.0  # keep-alive while requests run, so a silent PHP script is not idle


class QuicEndpoint(Protocol):
    """What a connection needs from the UDP server that owns the socket."""

    def sendto(self, data: bytes, addr: NetworkAddress) -> None: ...

    @property
    def write_paused(self) -> bool: ...

    def route(self, cid: bytes, conn: H3Connection) -> None: ...

    def unroute(self, cid: bytes) -> None: ...

    def forget(self, conn: H3Connection) -> None: ...


class H3Connection:
    """One QUIC connection of the UDP server with its request streams."""

    def __init__(
        self,
        state: ServerState,
        endpoint: QuicEndpoint,
        adapter: Http3Adapter,
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
        self.streams: dict[int, RequestStream] = {}
        self.cids: set[bytes] = set()
        self.handshaking = True
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._idle_since = self.loop.time()
        self._housekeeping: asyncio.TimerHandle | None = self.loop.call_later(
            self._housekeeping_delay(), self._keepalive
        )
        self._released = False  # no longer counted by ServerState (closed or closing)
        self._terminated = False
        self.on_handshake: Callable[[H3Connection], None] | None = None

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
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.feed(event.data)
            elif isinstance(event, Request):
                self._start(event)
            elif isinstance(event, EndBody):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.end_body()
            elif isinstance(event, StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.disconnect()
            elif isinstance(event, BodyTooLarge):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.fail(413)
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
        stream = RequestStream(self, request, self.client, self.server, True,
                               request.refused or None)
        self.streams[request.stream_id] = stream
        stream.start()

    # -- StreamOwner (gateway/server/stream.py) ------------------------------------------

    def write_head(self, stream: RequestStream, status: int, headers: Headers) -> None:
        self.adapter.send_response(stream.stream_id, status, headers)
        self.transmit_soon()

    def write_interim(self, stream: RequestStream, status: int, headers: Headers) -> None:
        self.adapter.send_interim(stream.stream_id, status, headers)
        self.transmit_soon()

    def write_body(self, stream: RequestStream, data: bytes | memoryview) -> int:
        # QUIC takes the whole body; it is handed over in slices so backpressure can act
        piece = data if len(data) <= MAX_SEND_PIECE else data[:MAX_SEND_PIECE]
        self.adapter.send_data(stream.stream_id, bytes(piece))
        return len(piece)

    def must_wait(self, stream: RequestStream, more: bool) -> bool:
        adapter = self.adapter
        if adapter.send_backlog(stream.stream_id) < self.high_water:
            self.transmit_soon()
            return False
        self.transmit_now()  # the backlog may just need a push onto the wire
        return adapter.send_backlog(stream.stream_id) >= self.high_water \
            and not self._terminated

    def write_end(self, stream: RequestStream) -> None:
        self.adapter.end_stream(stream.stream_id)
        self.transmit_soon()

    def abort_stream(self, stream: RequestStream) -> None:
        self.adapter.reset(stream.stream_id, ErrorCode.H3_REQUEST_CANCELLED
                           if stream.disconnected.is_set() else ErrorCode.H3_INTERNAL_ERROR)
        self.transmit_soon()
        stream.disconnect()

    def body_consumed(self, stream: RequestStream, size: int) -> None:
        self.adapter.acknowledge(stream.stream_id, size)
        self.transmit_soon()  # the new credit goes out as MAX_STREAM_DATA

    def body_wanted(self, stream: RequestStream) -> None:
        pass  # credit is granted as the app consumes

    def stream_over(self, stream: RequestStream) -> None:
        stream_id = stream.stream_id
        if self.streams.get(stream_id) is stream:
            del self.streams[stream_id]
        if self._terminated:
            return
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
        if not endpoint.write_paused:
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
        for stream in self.streams.values():
            if stream.waiting_to_send and backlog(stream.stream_id) <= self.low_water:
                stream.wake_sender()

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
        for stream in list(self.streams.values()):
            stream.disconnect()
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
