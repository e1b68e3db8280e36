"""HTTP/2 over an asyncio transport: drives a sans-IO HTTP/2 adapter (nghttp2's or h2's, as
HTTP2_IMPL says), one RequestStream per HTTP/2 stream (gateway/server/stream.py), flow
control in both directions, GOAWAY on drain; a stream reset by the peer stops its app."""

from __future__ import annotations

import asyncio
from typing import cast

import h2.errors

from gateway.protocol.events import Body, BodyTooLarge, EndBody, Headers, Request, StreamReset
from gateway.protocol.http2 import ConnectionClosed, H2Event, Http2Adapter, WindowOpened
from gateway.protocol.http2_nghttp2 import Nghttp2Adapter
from gateway.server.state import LINGER_SECONDS, ServerState, close_transport, log
from gateway.server.stream import RequestStream

# the same interface and events: HTTP2_IMPL picks (gateway/server/settings.py HTTP2_IMPLS)
ADAPTERS: dict[str, type[Http2Adapter] | type[Nghttp2Adapter]] = {
    "nghttp2": Nghttp2Adapter, "h2": Http2Adapter,
}

# once this much body is queued in h2 it is written at once; less waits for the end of the
# loop pass, so that the responses of concurrent streams share one write
_FLUSH_NOW_BYTES = 65536


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection (made by gateway/server/dispatch.py); the StreamOwner of its
    streams."""

    def __init__(self, state: ServerState, tls: bool) -> None:
        settings = state.settings
        self.state = state
        self.loop = state.loop
        self.tls = tls
        self.conn = ADAPTERS[settings.http2_impl](
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
        self._streams: dict[int, RequestStream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False
        self._requested = False
        self._registered = False

    # -- start and transport callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Only for direct use; normally H1Connection hands over with start()."""
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if not self.state.opened(self):
            transport.close()  # MAX_CONNECTIONS
            self._closing = True
            return
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
        for stream in list(self._streams.values()):
            stream.disconnect()
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
        for stream in self._streams.values():
            stream.wake_sender()

    # -- events ----------------------------------------------------------------------------

    def _handle(self, events: list[H2Event]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, Body):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.feed(event.data)
                else:
                    self.conn.acknowledge(event.stream_id, len(event.data))
            elif isinstance(event, Request):
                self._start_stream(event)
            elif isinstance(event, EndBody):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.end_body()
            elif isinstance(event, WindowOpened):
                if event.stream_id == 0:
                    for stream in streams.values():
                        stream.wake_sender()
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.wake_sender()
            elif isinstance(event, StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.disconnect()
            elif isinstance(event, BodyTooLarge):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.fail(413)
            elif isinstance(event, ConnectionClosed):
                if event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
                    log.warning("http2 flood: connection closed", reason=event.reason,
                                client=self.client[0])
                # h2 sends nothing more once the connection is over: stop the apps now
                for stream in list(streams.values()):
                    stream.disconnect()
                self._close_transport(linger=event.error_code != 0)
                return

    def _start_stream(self, request: Request) -> None:
        self._requested = True
        self._cancel_timer()
        stream = RequestStream(self, request, self.client, self.server, self.tls,
                               request.refused or None)
        self._streams[request.stream_id] = stream
        stream.start()

    # -- StreamOwner (gateway/server/stream.py) --------------------------------------------

    def write_head(self, stream: RequestStream, status: int, headers: Headers) -> None:
        self.conn.send_response(stream.stream_id, status, headers)
        self.flush_soon()

    def write_interim(self, stream: RequestStream, status: int, headers: Headers) -> None:
        self.conn.send_interim(stream.stream_id, status, headers)
        self.flush_soon()

    def write_body(self, stream: RequestStream, data: bytes | memoryview) -> int:
        taken = self.conn.send_data(stream.stream_id, data)
        if taken:
            # frames of many streams leave together, in one TLS write and syscall
            self.unflushed += taken
            if self.unflushed >= _FLUSH_NOW_BYTES:
                self.flush()
            else:
                self.flush_soon()
        return taken

    def must_wait(self, stream: RequestStream, more: bool) -> bool:
        if self._closing:
            return False
        return self.write_paused or (more and not self.conn.sendable(stream.stream_id))

    def write_end(self, stream: RequestStream) -> None:
        self.conn.end_stream(stream.stream_id)
        self.flush_soon()

    def abort_stream(self, stream: RequestStream) -> None:
        if not self._closing:
            self.conn.reset(stream.stream_id, h2.errors.ErrorCodes.CANCEL
                            if stream.disconnected.is_set()
                            else h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.flush()
        stream.disconnect()

    def body_consumed(self, stream: RequestStream, size: int) -> None:
        self.conn.acknowledge(stream.stream_id, size)
        self.flush_soon()

    def body_wanted(self, stream: RequestStream) -> None:
        pass  # the peer sends while it has window; consuming grants more

    def stream_over(self, stream: RequestStream) -> None:
        self._streams.pop(stream.stream_id, None)
        if self._closing:
            return
        # body the app never read: give the connection window back
        self.conn.acknowledge(stream.stream_id, stream.discard_unread())
        self.conn.stream_finished(stream.stream_id)
        if not self._streams:
            if self.conn.draining:
                self.conn.close()
                self._close_transport()
                return
            self._arm_idle()
        self.flush_soon()

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

    def _close_transport(self, linger: bool = False) -> None:
        """Close after what is queued. With linger (a GOAWAY for an error), half-close and
        read-and-discard for a moment first: closing with the peer's frames unread would
        make the kernel send a reset that can overtake the GOAWAY explaining why."""
        if self._closing:
            return
        self.flush()
        self._closing = True  # data_received discards from now on
        self._cancel_timer()
        transport = self.transport
        if transport is None:
            return
        if linger and transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self.loop.call_later(LINGER_SECONDS, close_transport, transport, self.loop)
        else:
            close_transport(transport, self.loop)

    def shutdown(self) -> None:
        if self._closing:
            return
        self.conn.start_drain()
        if self.conn.closed:
            self._close_transport()
        else:
            self.flush()

    def abort(self) -> None:
        for stream in list(self._streams.values()):
            stream.disconnect()
        self._closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()
