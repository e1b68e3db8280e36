"""HTTP/3 server adapter over aioquic, sans-IO: datagrams in, events out, datagrams back.

One `Http3Adapter` is one QUIC connection. It feeds aioquic's `QuicConnection` and
`H3Connection`, turns their events into the Request/Body/EndBody/StreamReset events every
adapter emits (plus CidIssued/CidRetired/ConnectionClosed for the UDP layer) and serialises
the pipeline's answers. Waiting (for the app, for the peer) is the caller's job.

Flow control, per request stream, both ways:
- Receive: aioquic raises MAX_STREAM_DATA as bytes *arrive*, so a peer could fill memory
  behind an app that does not read. `_FlowControlledQuic` replaces that policy for request
  streams: credit is the consumed offset plus `stream_window`, where "consumed" excludes the
  body bytes the app has not taken yet (`acknowledge()`) and the bytes aioquic's H3 parser
  still holds. A stream therefore buffers at most one window; the connection-level MAX_DATA
  keeps aioquic's own policy, bounded in practice by streams x window.
- Send: `QuicConnection.send_stream_data` buffers without limit. `send_backlog()` reports
  the bytes of a stream not yet put on the wire (held back by the peer's window or by
  congestion control); the caller waits while it is above its high-water mark.

Malformed requests: what aioquic's H3 layer rejects (upper-case or connection-specific
fields, bad pseudo-header order, bad content-length) closes the connection with
H3_MESSAGE_ERROR, aioquic's choice. What it lets through and HTTP forbids (missing :scheme or
:path, bad method or target, Host differing from :authority, repeated Content-Length,
oversized headers) is answered here on the stream alone (400/431/413/501) and never
reaches the app.

Private aioquic state is read or overridden only in `_FlowControlledQuic` and `_H3`
(checked against aioquic 1.2 to 1.7; tests/unit/test_http3.py fails if it drifts).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import (
    H3_ALPN,
    ErrorCode,
    FrameType,
    H3Connection,
    Setting,
    encode_frame,
)
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import (
    MAX_STREAM_DATA_FRAME_CAPACITY,
    Limit,
    NetworkAddress,
    QuicConnection,
    QuicConnectionState,
)
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from gateway.protocol.events import Body, BodyTooLarge, EndBody, Headers, Request, StreamReset
from gateway.protocol.request_fields import split_request_fields, valid_host
from gateway.protocol.response_headers import (
    STATUS,
    ResponseDefaults,
    interim_fields,
    response_fields,
)

ALPN: Final = tuple(H3_ALPN)
STREAM_WINDOW: Final = 256 * 1024
CONNECTION_WINDOW: Final = 1024 * 1024
MAX_UNI_STREAMS: Final = 8  # a client needs 3 (control, QPACK encoder and decoder)
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET: Final = re.compile(rb"[\x00-\x20\x7f]")
_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path"))
_DROPPED_RESPONSE_HEADERS: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
     b"te", b"date", b"server")
)
_END_STATES: Final = frozenset(
    (QuicConnectionState.CLOSING, QuicConnectionState.DRAINING, QuicConnectionState.TERMINATED)
)


@dataclass(frozen=True, slots=True)
class CidIssued:
    """The connection answers to one more connection ID: route datagrams for it here."""

    cid: bytes


@dataclass(frozen=True, slots=True)
class CidRetired:
    cid: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The QUIC connection is over (closed by either side, idle timeout): forget it."""

    error_code: int
    reason: str


H3AdapterEvent = (
    Request | Body | EndBody | BodyTooLarge | StreamReset | CidIssued | CidRetired
    | ConnectionClosed
)


def is_request_stream(stream_id: int) -> bool:
    return stream_id % 4 == 0  # client-initiated bidirectional


class _FlowControlledQuic(QuicConnection):
    """A QuicConnection whose request-stream receive credit follows what the app consumed."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        original_destination_connection_id: bytes | None,
        retry_source_connection_id: bytes | None,
        max_concurrent_streams: int,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        # aioquic hard-codes 128; the transport parameters are built later, in the handshake
        self._local_max_streams_bidi = Limit(
            frame_type=QuicFrameType.MAX_STREAMS_BIDI,
            name="max_streams_bidi",
            value=max_concurrent_streams,
        )
        self._local_max_streams_uni = Limit(
            frame_type=QuicFrameType.MAX_STREAMS_UNI, name="max_streams_uni",
            value=MAX_UNI_STREAMS,
        )
        # the same window the transport parameters announce for request streams
        self._stream_window = configuration.max_stream_data
        self.held_bytes: dict[int, int] = {}  # request streams under our policy: bytes unconsumed

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        held = self.held_bytes.get(stream_id) if stream_id is not None else None
        if held is None or stream_id is None:
            super()._write_stream_limits(builder, space, stream)
            return
        if stream.receiver.is_finished:
            return  # the whole request arrived (or was reset): no more credit is useful
        window = self._stream_window
        target = stream.receiver.starting_offset() - held + window
        # grant in steps of half a window so credit goes out in few frames
        if target - stream.max_stream_data_local >= window // 2:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    def unsent(self, stream_id: int) -> int:
        """Bytes written to the stream that have not been put on the wire yet."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return max(0, sender._buffer_stop - sender.highest_offset)

    def responses_delivered(self) -> bool:
        """Every request stream's response was acknowledged (or reset): closing loses nothing."""
        return all(
            stream.sender.is_finished or stream.sender.reset_pending
            for stream_id, stream in self._streams.items()
            if stream_id % 4 == 0
        )

    @property
    def ending(self) -> bool:
        """Closing, draining or terminated: nothing more will be delivered or sent."""
        return self._state in _END_STATES


class _H3(H3Connection):
    """aioquic's H3Connection with GOAWAY, our SETTINGS and a look at its parse buffer."""

    def __init__(self, quic: QuicConnection, max_field_section_size: int) -> None:
        self._field_section_limit = max_field_section_size  # read by __init__ via settings
        super().__init__(quic)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.pop(Setting.ENABLE_CONNECT_PROTOCOL, None)  # no extended CONNECT (RFC 9220)
        settings[Setting.MAX_FIELD_SECTION_SIZE] = self._field_section_limit
        return settings

    def send_goaway(self, stream_id: int) -> None:
        assert self._local_control_stream_id is not None
        self._quic.send_stream_data(
            self._local_control_stream_id,
            encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id)),
        )

    def parser_backlog(self, stream_id: int) -> int:
        """Stream bytes received but not yet parsed into an event (partial frames)."""
        stream = self._stream.get(stream_id)
        return len(stream.buffer) if stream is not None else 0


class _Stream:
    __slots__ = (
        "done", "head", "held", "quic_ended", "received", "receiving", "send_remaining", "started",
    )

    def __init__(self, head: bool, receiving: bool) -> None:
        self.head = head
        self.receiving = receiving  # the request body is still arriving
        self.received = 0
        self.held = 0  # body bytes handed out as Body events and not yet acknowledged
        self.started = False  # response headers sent
        self.done = False  # response finished (FIN or reset)
        self.send_remaining = -1  # declared content-length still to send, -1 if none
        self.quic_ended = not receiving  # the peer's side of the stream is finished or reset


class Http3Adapter:
    """One QUIC connection carrying HTTP/3, server side, without I/O.

    Feed it with receive_datagram() and handle_timer(), then take events() and send
    datagrams_to_send(); call get_timer() after each of those to re-arm the timer.
    """

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        original_destination_connection_id: bytes | None,
        retry_source_connection_id: bytes | None = None,
        defaults: ResponseDefaults | None = None,
        max_concurrent_streams: int = 100,
        max_header_list_size: int = 65536,
        max_body_bytes: int = 64 * 1024 * 1024,
        rapid_reset_limit: int = 100,
        rapid_reset_window: float = 30.0,
    ) -> None:
        if configuration.is_client:
            raise ValueError("Http3Adapter is the server side: is_client must be False")
        if max_header_list_size >= configuration.max_stream_data:
            # a header block is credited only once parsed: it must fit in one stream window
            raise ValueError("max_header_list_size must be smaller than the stream window")
        self.quic = _FlowControlledQuic(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
            max_concurrent_streams=max_concurrent_streams,
        )
        self._h3: _H3 | None = None
        self._defaults = defaults if defaults is not None else ResponseDefaults()
        self._max_streams = max_concurrent_streams
        self._max_header_list_size = max_header_list_size
        self._max_body_bytes = max_body_bytes
        self._streams: dict[int, _Stream] = {}
        self._ignored: set[int] = set()  # refused or abandoned: drop their events until they end
        self._events: list[H3AdapterEvent] = []
        self._resets: deque[float] = deque(maxlen=max(1, rapid_reset_limit))
        self._reset_window = rapid_reset_window
        self._now = 0.0
        self._next_request_id = 0  # one past the highest request stream seen
        self._goaway_id: int | None = None
        self._close_when_delivered = False
        self.closed = False
        self._terminated = False
        self.handshake_complete = False
        self.streams_opened = 0
        self.streams_reset_by_peer = 0

    # -- input ---------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        self._now = now
        self.quic.receive_datagram(data, addr, now)
        self._process_quic_events()

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.quic.handle_timer(now)
        self._process_quic_events()

    def get_timer(self) -> float | None:
        return self.quic.get_timer()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        self._now = now
        out = self.quic.datagrams_to_send(now)
        closed = self.closed
        self._process_quic_events()  # sending issues connection IDs, a drain may close
        if self.closed and not closed:
            out += self.quic.datagrams_to_send(now)  # the CONNECTION_CLOSE decided just now
            self._process_quic_events()
        return out

    def events(self) -> list[H3AdapterEvent]:
        out = self._events
        self._events = []
        return out

    def _process_quic_events(self) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, quic_events.StreamDataReceived):
                self._on_stream_data(event)
            elif isinstance(event, quic_events.StreamReset):
                self._on_peer_abort(event.stream_id, stopped=False)
                self._h3_event(event)
                self._quic_ended(event.stream_id)
            elif isinstance(event, quic_events.StopSendingReceived):
                self._on_peer_abort(event.stream_id, stopped=True)
                self._h3_event(event)
            elif isinstance(event, quic_events.ProtocolNegotiated):
                if event.alpn_protocol in ALPN and self._h3 is None:
                    self._h3 = _H3(quic, self._max_header_list_size)
            elif isinstance(event, quic_events.HandshakeCompleted):
                self.handshake_complete = True
            elif isinstance(event, quic_events.ConnectionIdIssued):
                self._events.append(CidIssued(event.connection_id))
            elif isinstance(event, quic_events.ConnectionIdRetired):
                self._events.append(CidRetired(event.connection_id))
            elif isinstance(event, quic_events.ConnectionTerminated):
                self._mark_closed()
                if not self._terminated:
                    self._terminated = True
                    self._events.append(ConnectionClosed(event.error_code, event.reason_phrase))
        if not self.closed and quic.ending:
            self._mark_closed()  # the peer closed, or aioquic's H3 layer hit a protocol error
        self._maybe_close()

    def _maybe_close(self) -> None:
        """Drain: close once the last response is acknowledged (a close drops unsent data)."""
        if self._close_when_delivered and not self.closed and self.quic.responses_delivered():
            self.close()

    def _h3_event(self, event: quic_events.QuicEvent) -> list[H3Event]:
        if self._h3 is None or self.closed:
            return []
        return self._h3.handle_event(event)

    def _on_stream_data(self, event: quic_events.StreamDataReceived) -> None:
        stream_id = event.stream_id
        for h3_event in self._h3_event(event):
            if isinstance(h3_event, HeadersReceived):
                self._on_headers(h3_event)
            elif isinstance(h3_event, DataReceived):
                self._on_data(h3_event)
        if not is_request_stream(stream_id):
            return
        # GOAWAY will cover every stream that has sent anything: those are served
        self._next_request_id = max(self._next_request_id, stream_id + 4)
        if event.end_stream:
            self._quic_ended(stream_id)
        else:
            self._update_credit(stream_id)

    def _quic_ended(self, stream_id: int) -> None:
        """The peer finished or reset its side of the stream: no more events will come."""
        self._ignored.discard(stream_id)
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.quic_ended = True
        self.quic.held_bytes.pop(stream_id, None)

    def _update_credit(self, stream_id: int) -> None:
        """Tell the QUIC layer how many received bytes of a request stream are still held."""
        stream = self._streams.get(stream_id)
        if self._h3 is None or (stream is not None and stream.quic_ended):
            return
        backlog = self._h3.parser_backlog(stream_id)  # a HEADERS frame (or trailers) in parts
        if stream_id in self._ignored or (stream is not None and not stream.receiving):
            # body bytes are dropped on arrival; a header block still may not outgrow a window
            self.quic.held_bytes[stream_id] = backlog
            return
        if backlog > self._max_header_list_size:
            if stream is None:
                self._refuse(stream_id, 431, ended=False)
            else:
                self.reset(stream_id, ErrorCode.H3_EXCESSIVE_LOAD)
                self._events.append(StreamReset(stream_id))
            self.quic.held_bytes[stream_id] = backlog
            return
        self.quic.held_bytes[stream_id] = backlog + (stream.held if stream is not None else 0)

    def _on_headers(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None or stream_id in self._ignored:
            if stream is not None and event.stream_ended and stream.receiving:
                stream.receiving = False  # trailers end the body; PHP has no use for them
                self._events.append(EndBody(stream_id))
            return
        if not is_request_stream(stream_id):
            return
        ended = event.stream_ended
        if (self._goaway_id is not None and stream_id >= self._goaway_id) or (
            len(self._streams) >= self._max_streams  # includes apps still running after a reset
        ):
            self._reject(stream_id, ended)
            return
        request = self._parse_request(stream_id, event.headers, ended)
        if isinstance(request, int):  # answered by the server's chain with what is known
            request = Request(stream_id, b"", b"", [], "3", b"", "https", None, not ended,
                              request)
        self.streams_opened += 1
        stream = _Stream(request.method == b"HEAD", not ended)
        self._streams[stream_id] = stream
        self._events.append(request)
        if ended:
            self._events.append(EndBody(stream_id))

    def _parse_request(self, stream_id: int, fields: Headers, ended: bool) -> Request | int:
        """The Request, or the status that refuses it (aioquic checked names and order)."""
        split = split_request_fields(fields)
        if split.repeated:
            return 400  # content-length or host, as HTTP/1 refuses them
        if split.size > self._max_header_list_size:
            return 431
        pseudo = split.pseudo
        method = pseudo.get(b":method")
        # an unknown one is :protocol, and we do not offer extended CONNECT
        if method is None or _TOKEN.fullmatch(method) is None or not pseudo.keys() <= _PSEUDO:
            return 400
        scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
        if scheme not in (b"https", b"http") or not path or _BAD_TARGET.search(path):
            return 400
        if path[0] != 0x2F and not (path == b"*" and method == b"OPTIONS"):
            return 400
        authority = pseudo.get(b":authority")
        if authority is None or (split.host is not None and split.host != authority):
            return 400  # RFC 9114 §4.3.1: both present means both equal
        if not valid_host(authority):
            return 400  # RFC 3986 host[:port], as HTTP/1 checks Host
        length = split.content_length
        content_length = int(length) if length is not None else None  # aioquic checked digits
        refused = 0
        if method == b"CONNECT":
            refused = 501
        elif content_length is not None and content_length > self._max_body_bytes:
            refused = 413
        return Request(
            stream_id, method, path, split.headers, "3", authority, "https", content_length,
            not ended, refused,
        )

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        stream = self._streams.get(stream_id)
        if stream is None or not stream.receiving:
            return  # refused or abandoned: its credit is not held back
        data = event.data
        if data:
            stream.received += len(data)
            if stream.received > self._max_body_bytes:
                self._body_too_large(stream_id, stream)
                return
            stream.held += len(data)  # the QUIC layer learns it in _update_credit()
            self._events.append(Body(stream_id, data))
        if event.stream_ended:
            stream.receiving = False
            self._events.append(EndBody(stream_id))

    def _body_too_large(self, stream_id: int, stream: _Stream) -> None:
        stream.receiving = False
        self._ignored.add(stream_id)
        self.quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
        self._events.append(BodyTooLarge(stream_id))

    def _on_peer_abort(self, stream_id: int, stopped: bool) -> None:
        """RESET_STREAM (request abandoned) or STOP_SENDING (response unwanted)."""
        stream = self._streams.get(stream_id)
        if stream is None or (stream.done if stopped else not stream.receiving):
            return  # nothing of ours is cut short: the response or the request was complete
        unfinished = not stream.done
        stream.done = True
        if stream.receiving:
            stream.receiving = False
            if stopped:
                self.quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        if not stopped and unfinished:
            self.quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self._events.append(StreamReset(stream_id))
        if not unfinished:
            return
        # CVE-2023-44487 (rapid reset): count peer resets of unfinished responses
        self.streams_reset_by_peer += 1
        resets = self._resets
        resets.append(self._now)
        if len(resets) == resets.maxlen and self._now - resets[0] <= self._reset_window:
            self.close(ErrorCode.H3_EXCESSIVE_LOAD, "too many stream resets")

    def _mark_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream_id, stream in self._streams.items():
            if not stream.done:
                stream.done = True
                stream.receiving = False
                self._events.append(StreamReset(stream_id))

    def _reject(self, stream_id: int, ended: bool) -> None:
        """Not processed at all (RFC 9114 §4.1.1): the client may retry it elsewhere."""
        self._ignored.add(stream_id)
        self.quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
        if not ended:
            self.quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)

    def _refuse(self, stream_id: int, status: int, ended: bool) -> None:
        """Answer without the app; stop an unfinished upload with STOP_SENDING(H3_NO_ERROR)."""
        self._send_status(stream_id, status)
        if not ended:
            self._ignored.add(stream_id)
            self.quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)

    def _send_status(self, stream_id: int, status: int) -> None:
        assert self._h3 is not None
        self._h3.send_headers(
            stream_id,
            [(b":status", STATUS[status]), *self._defaults.h2, (b"content-length", b"0")],
            end_stream=True,
        )

    # -- output --------------------------------------------------------------------------

    def send_response(self, stream_id: int, status: int, headers: Headers) -> None:
        stream = self._streams[stream_id]
        if stream.started:
            raise RuntimeError("response already started")
        if status < 200 or status > 599:
            raise ValueError(f"invalid final status {status}")
        # connection-specific fields make an HTTP/3 message malformed
        out, remaining = response_fields(status, headers, self._defaults, _DROPPED_RESPONSE_HEADERS)
        stream.started = True  # only now: a refused header block still allows a 500
        stream.send_remaining = remaining
        if stream.done or self.closed:
            return  # reset meanwhile: nothing may be sent
        assert self._h3 is not None
        bodyless = stream.head or status == 204 or status == 304
        self._h3.send_headers(stream_id, out, end_stream=bodyless)
        if bodyless:
            stream.done = True

    def send_interim(self, stream_id: int, status: int, headers: Headers) -> None:
        """A 1xx HEADERS frame (103 Early Hints) ahead of the response (RFC 9114 §4.1)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.started or stream.done or self.closed:
            return
        assert self._h3 is not None
        self._h3.send_headers(stream_id, interim_fields(status, headers,
                                                        _DROPPED_RESPONSE_HEADERS))

    def body_allowed(self, stream_id: int) -> bool:
        """False once nothing more may be sent (HEAD/204/304 already ended, reset, finished)."""
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.done and not self.closed

    def send_backlog(self, stream_id: int) -> int:
        """Bytes of this stream waiting for the peer's window or the congestion window."""
        return self.quic.unsent(stream_id)

    def send_data(self, stream_id: int, data: bytes) -> None:
        stream = self._streams[stream_id]
        if stream.done or self.closed or not data:
            return  # HEAD/204/304 or reset: the body is discarded
        if stream.send_remaining >= 0:
            if len(data) > stream.send_remaining:
                raise RuntimeError("response body longer than its content-length")
            stream.send_remaining -= len(data)
        assert self._h3 is not None
        self._h3.send_data(stream_id, data, end_stream=False)

    def end_stream(self, stream_id: int) -> None:
        stream = self._streams[stream_id]
        if stream.done or self.closed:
            return
        if stream.send_remaining > 0:
            self.reset(stream_id, ErrorCode.H3_INTERNAL_ERROR)
            raise RuntimeError("response body shorter than its content-length")
        stream.done = True
        assert self._h3 is not None
        self._h3.send_data(stream_id, b"", end_stream=True)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed `size` body bytes of this stream: let the peer send that much more."""
        stream = self._streams.get(stream_id)
        if stream is not None and size:
            stream.held = max(0, stream.held - size)
            self._update_credit(stream_id)

    def reset(self, stream_id: int, error_code: int = ErrorCode.H3_INTERNAL_ERROR) -> None:
        """Abort one stream (app failure after the response started, timeouts)."""
        stream = self._streams.get(stream_id)
        if stream is None or self.closed:
            return
        if stream.receiving:
            stream.receiving = False
            self._ignored.add(stream_id)
            self.quic.stop_stream(stream_id, error_code)
        if not stream.done:
            stream.done = True
            self.quic.reset_stream(stream_id, error_code)

    def stream_finished(self, stream_id: int) -> None:
        """The app task of this stream is over: forget it (and stop an upload nobody reads)."""
        stream = self._streams.pop(stream_id, None)
        if stream is None or self.closed:
            return
        if stream.quic_ended:
            self.quic.held_bytes.pop(stream_id, None)
        else:
            self._ignored.add(stream_id)  # late frames must not look like a new request
            self._update_credit(stream_id)
            if stream.receiving:
                self.quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
        if not stream.done:
            self.quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
        if self._goaway_id is not None and not self._streams:
            self._close_when_delivered = True  # checked after the next send or ACK

    # -- connection ----------------------------------------------------------------------

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def draining(self) -> bool:
        return self._goaway_id is not None

    def start_drain(self) -> None:
        """Graceful shutdown: GOAWAY now, in-flight requests finish, later ones are rejected.

        Requests on streams below the GOAWAY id that are still on their way are served
        (RFC 9114 §5.2); the connection closes with H3_NO_ERROR once none is left and
        every response has been acknowledged.
        """
        if self._goaway_id is not None or self.closed:
            return
        self._goaway_id = self._next_request_id
        if self._h3 is None or not self.handshake_complete:
            self.close()
            return
        self._h3.send_goaway(self._goaway_id)
        if not self._streams:
            self._close_when_delivered = True  # after datagrams_to_send() has sent the GOAWAY

    def close(self, error_code: int = ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        """Send CONNECTION_CLOSE with an HTTP/3 error code; ConnectionClosed follows later."""
        if self.closed:
            return
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self._mark_closed()
