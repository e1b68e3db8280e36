"""HTTP/2 server adapter around h2, sans-IO.

Bytes in, events out (the same Request/Body/EndBody/StreamReset as HTTP/1.1, plus
WindowOpened and ConnectionClosed for the connection layer); responses go out through
h2 and come back from data_to_send(). Waiting (for window, for the app) is the caller's job.

Flow control: received DATA is acknowledged only when the caller says the app consumed it
(acknowledge()), so a stream that is not read holds at most one 64 KiB window; the
connection window is larger so that one stalled stream does not stall the others.
The bookkeeping both HTTP/2 adapters keep (refused requests, rapid reset, the drain) is
Http2Session's, in gateway/protocol/http2_common.py.
"""

from __future__ import annotations

import binascii
import contextlib
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hyperframe.frame
from hyperframe.frame import GoAwayFrame

from gateway.protocol.events import EndBody, Headers, Request
from gateway.protocol.hpack_memo import MemoDecoder, MemoEncoder
from gateway.protocol.http2_common import (
    CONNECTION_WINDOW,
    FLOOD_BASE,
    STREAM_WINDOW,
    ConnectionClosed,
    H2Event,
    Http2Session,
    Stream,
    WindowOpened,
)
from gateway.protocol.request_fields import malformed_h2_request, split_request_fields

# the interface's events and constants, where the server and the tests have imported them
__all__ = ["CONNECTION_WINDOW", "FLOOD_BASE", "STREAM_WINDOW", "ConnectionClosed", "H2Event",
           "Http2Adapter", "WindowOpened"]


def _short_data_repr(data: bytes | None) -> str:
    """hyperframe's payload repr, same text, without hex-encoding the whole payload first.

    h2 formats every frame it receives for its trace log even when nothing logs
    (`repr(frame)` in H2Connection._receive_frame); hyperframe hex-encoded all of a DATA
    frame's payload and then kept 20 characters: 5 % of a worker's time under 10 KB uploads.
    """
    if not data:
        return "None"
    text = binascii.hexlify(data[:11]).decode("ascii")  # 22 hex digits: enough to cut at 20
    return "<hex:" + (text[:20] + "..." if len(data) > 10 else text) + ">"


hyperframe.frame._raw_data_repr = _short_data_repr

_SERVER_OPEN: Final = h2.connection.ConnectionState.SERVER_OPEN
_SENDING_STATES: Final = frozenset((h2.stream.StreamState.OPEN,
                                    h2.stream.StreamState.HALF_CLOSED_REMOTE))
_SLICE: Final = 16 * 1024  # bytes of a read given to h2 at once (see receive_data)
_CONTROL_EVENTS: Final = frozenset((
    h2.events.PingReceived, h2.events.PingAckReceived, h2.events.RemoteSettingsChanged,
    h2.events.SettingsAcknowledged, h2.events.WindowUpdated, h2.events.PriorityUpdated,
    h2.events.StreamReset, h2.events.UnknownFrameReceived,
))


class Http2Adapter(Http2Session):
    """One HTTP/2 connection, server side, without I/O."""

    def _open_engine(self, max_concurrent_streams: int, max_header_list_size: int) -> None:
        # Outbound fields are checked once, by response_fields (lower-case tokens, no CR/LF/NUL,
        # no connection-specific fields): h2's second pass over them costs ~10% of a request.
        # Inbound sections are checked by malformed_h2_request in one regex pass (h2's walk
        # over every byte cost ~13 µs a request); cookie crumbs are joined by the splitter.
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False,
        )
        conn = h2.connection.H2Connection(config)
        codes = h2.settings.SettingCodes
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                codes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                codes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        conn.decoder = MemoDecoder(like=conn.decoder)  # see gateway/protocol/hpack_memo.py
        conn.encoder = MemoEncoder(like=conn.encoder)
        # h2 only applies the header-list limit to its decoder once the peer ACKs: apply it now
        conn.decoder.max_header_list_size = max_header_list_size
        self._h2 = conn
        self._pending = b""
        # flood guard: frames that move no request forward, against what the peer has earned
        self._control_frames = 0
        self._payload_bytes = 0  # DATA received and sent

    # -- start -------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Start a connection chosen by ALPN or by the prior-knowledge preface."""
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)

    def initiate_upgrade(self, settings: bytes, request: Request) -> list[H2Event]:
        """Start after an h2c upgrade: `request` (already complete) becomes stream 1."""
        try:
            self._h2.initiate_upgrade_connection(settings)
        except (ValueError, h2.exceptions.ProtocolError) as exc:  # bad base64 or settings
            return self._upgrade_failed(str(exc))
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)
        return self._upgraded(request)

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[H2Event]:
        if len(data) <= _SLICE:
            return self._receive(data, [])
        # a large read is parsed a slice at a time, so that a flood is stopped after the slice
        # that crossed the limit, not after a whole read's worth of tiny frames
        out: list[H2Event] = []
        view = memoryview(data)
        for start in range(0, len(data), _SLICE):
            if self.closed:
                break
            self._receive(bytes(view[start : start + _SLICE]), out)
        return out

    def _receive(self, data: bytes, out: list[H2Event]) -> list[H2Event]:
        if self.closed:
            return out
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.closed = True  # h2 has queued a GOAWAY with the error code
            out.append(ConnectionClosed(int(exc.error_code), str(exc) or type(exc).__name__))
            return out
        for event in events:
            if type(event) in _CONTROL_EVENTS or (
                type(event) is h2.events.DataReceived and not event.data
                and event.stream_ended is None
            ):
                self._control_frames += 1
                if self._control_frames > self._control_allowance():
                    self.close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                    out.append(ConnectionClosed(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                                "control-frame flood"))
                    return out
            if isinstance(event, h2.events.DataReceived):
                self._payload_bytes += len(event.data or b"")
                self._on_data(event, out)
            elif isinstance(event, h2.events.RequestReceived):
                self._on_request(event, out)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self._streams.get(event.stream_id or 0)
                if stream is not None and stream.receiving:
                    stream.receiving = False
                    out.append(EndBody(event.stream_id or 0))
            elif isinstance(event, h2.events.WindowUpdated):
                out.append(WindowOpened(event.stream_id or 0))
            elif isinstance(event, h2.events.StreamReset):
                assert event.stream_id is not None
                self._stream_reset(event.stream_id, bool(event.remote_reset), out)
                if self.closed:
                    return out
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                change = event.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
                if change is not None and change.new_value != change.original_value:
                    out.append(WindowOpened(0))
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
                out.append(ConnectionClosed(int(event.error_code or 0), "peer sent GOAWAY"))
                return out
        return out

    def _control_allowance(self) -> int:
        """Control frames (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, empty DATA)
        a peer may send: a base, plus what its requests and payload justify (a reader sends
        WINDOW_UPDATEs as it reads), as nginx ends a connection whose control traffic
        outweighs its payload ("http2 flood detected")."""
        return FLOOD_BASE + self.streams_opened * 10 + self._payload_bytes // 1024

    def _on_request(self, event: h2.events.RequestReceived, out: list[H2Event]) -> None:
        stream_id = event.stream_id
        assert stream_id is not None and event.headers is not None
        if (self._draining and stream_id > self._goaway_stream_id) or (
            len(self._streams) >= self._max_streams  # includes apps still running after a reset
        ):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        malformed = malformed_h2_request(event.headers)
        if malformed is not None:  # RFC 9113 §8.1.1: a stream error, the others go on
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        fields = split_request_fields(event.headers)
        method = fields.pseudo.get(b":method", b"")
        path = fields.pseudo.get(b":path", b"")
        authority = fields.pseudo.get(b":authority", b"") or fields.host or b""
        headers = fields.headers
        length = fields.content_length  # h2 has checked it, except on HEAD
        content_length = int(length) if length is not None and length.isdigit() else None
        ended = event.stream_ended is not None
        # receiving stays True until StreamEnded, which turns into EndBody even without a body
        out.append(self._open(stream_id, method, path, headers, authority, content_length,
                              ended, True))

    def _on_data(self, event: h2.events.DataReceived, out: list[H2Event]) -> None:
        stream_id = event.stream_id
        data = event.data
        assert stream_id is not None and data is not None
        flow = event.flow_controlled_length or 0
        stream = self._streams.get(stream_id)
        if stream is None or not stream.receiving:
            self._ack(stream_id, flow)  # nobody will read it: hand the window straight back
            return
        if flow > len(data):
            self._ack(stream_id, flow - len(data))  # padding is never "consumed" by the app
        self._take_body(stream_id, stream, bytes(data), out)

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._h2.data_to_send()
        if self._pending:
            out = self._pending + out
            self._pending = b""
        return out

    def _send_headers(self, stream_id: int, fields: Headers, end_stream: bool) -> bool:
        self._h2.send_headers(stream_id, fields, end_stream=end_stream)
        return True

    def _send_interim(self, stream_id: int, fields: Headers) -> None:
        self._h2.send_headers(stream_id, fields)

    def sendable(self, stream_id: int) -> int:
        """How many body bytes may go out now on this stream (0: wait for WindowOpened)."""
        try:
            window = self._h2.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0
        return max(0, min(window, self._h2.max_outbound_frame_size))

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of data as the windows allow; return how many bytes were taken."""
        stream = self._streams[stream_id]
        if stream.done or self.closed:
            return len(data)  # HEAD/204/304, reset or connection over: the body is discarded
        if stream.send_remaining >= 0 and len(data) > stream.send_remaining:
            raise RuntimeError("response body longer than its content-length")
        bulk = self._send_bulk(stream_id, stream, data)
        if bulk:
            self._payload_bytes += bulk
            return bulk
        size = min(len(data), self.sendable(stream_id))
        if size:
            # the bytes that complete a declared content-length carry END_STREAM themselves:
            # no empty DATA frame (and no second pass through h2) for end_stream()
            last = size == stream.send_remaining
            self._h2.send_data(stream_id, data[:size] if size < len(data) else data,
                               end_stream=last)
            if stream.send_remaining >= 0:
                stream.send_remaining -= size
            if last:
                stream.done = True
            self._payload_bytes += size
        return size

    def _send_bulk(self, stream_id: int, stream: Stream, data: bytes | memoryview) -> int:
        """Frame the full-size DATA frames of a large body here, bypassing h2's per-frame
        path (state machines, hyperframe objects, a copy each: ~10 µs a 16 KiB frame), and
        book the bytes against h2's flow-control windows as its send_data would. The last
        frame, which may carry END_STREAM, and every frame of an unusual state go through
        h2. Returns the bytes taken, 0 when h2 should send instead."""
        h2conn = self._h2
        frame = h2conn.max_outbound_frame_size
        if len(data) <= frame or h2conn.state_machine.state is not _SERVER_OPEN:
            return 0
        h2stream = h2conn.streams.get(stream_id)
        if h2stream is None or h2stream.state_machine.state not in _SENDING_STATES:
            return 0
        size = min(len(data), h2conn.local_flow_control_window(stream_id)) // frame * frame
        if size == len(data) and size == stream.send_remaining:
            size -= frame  # the last frame ends the stream: h2 sends it
        if size <= 0:
            return 0
        head = (frame << 48 | stream_id).to_bytes(9, "big")  # length, DATA, no flags, stream
        parts: list[bytes | memoryview] = [self._pending, h2conn.data_to_send()]  # h2's first
        for start in range(0, size, frame):
            parts += (head, data[start : start + frame])
        self._pending = b"".join(parts)
        h2conn.outbound_flow_control_window -= size
        h2stream.outbound_flow_control_window -= size
        if stream.send_remaining >= 0:
            stream.send_remaining -= size
        return size

    def _end(self, stream_id: int) -> None:
        self._h2.end_stream(stream_id)

    def _ack(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self._h2.acknowledge_received_data(size, stream_id)

    def _reset(self, stream_id: int, error_code: int) -> None:
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):  # both sides closed it
            self._h2.reset_stream(stream_id, error_code)

    def _stop_upload(self, stream_id: int) -> None:
        self._reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    # -- connection --------------------------------------------------------------------------

    def _last_stream_id(self) -> int:
        return self._h2.highest_inbound_stream_id

    def _goaway_notice(self) -> None:
        # h2's own close_connection() would refuse every later frame of in-flight streams
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._goaway_stream_id
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self._pending += self._h2.data_to_send() + frame.serialize()

    def _terminate(self, last_stream_id: int, error_code: int) -> None:
        self._h2.close_connection(error_code=error_code, last_stream_id=last_stream_id)
