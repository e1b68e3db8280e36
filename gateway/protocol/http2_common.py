"""What the two HTTP/2 adapters share (http2.py on h2, http2_nghttp2.py on libnghttp2): the
events and constants of their sans-IO interface, the stream record, and Http2Session, the
Python-side bookkeeping both keep around their engine (refused requests, the body limit,
rapid reset, the response checks, the drain). Each adapter supplies the engine calls (the
methods that raise NotImplementedError here) and its own receive_data and send_data.

Rapid reset (CVE-2023-44487): peer resets of streams whose response is not finished are
counted in a sliding window; too many end the connection with ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import h2.errors

from gateway.protocol.events import (
    Body,
    BodyTooLarge,
    EndBody,
    Headers,
    Request,
    StreamReset,
)
from gateway.protocol.request_fields import valid_host
from gateway.protocol.response_headers import ResponseDefaults, interim_fields, response_fields

STREAM_WINDOW: Final = 65535  # the protocol default: peers may send it before our SETTINGS
CONNECTION_WINDOW: Final = 16 * STREAM_WINDOW
FLOOD_BASE: Final = 1000  # control frames any connection may send (see http2.py)
UPGRADE_HEADERS: Final = frozenset((b"connection", b"upgrade", b"http2-settings"))
# connection-specific headers are illegal in HTTP/2 (RFC 9113 §8.2.2)
DROPPED_RESPONSE_HEADERS: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
     b"date", b"server")
)
_CODES: Final = h2.errors.ErrorCodes


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """The peer granted send window: stream_id 0 means every stream may try again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over (peer GOAWAY, protocol error, rapid reset): flush and close."""

    error_code: int
    reason: str


H2Event = Request | Body | EndBody | BodyTooLarge | StreamReset | WindowOpened | ConnectionClosed


class Stream:
    __slots__ = ("done", "head", "received", "receiving", "send_remaining", "started",
                 "stop_upload")

    def __init__(self, head: bool, receiving: bool) -> None:
        self.head = head
        self.receiving = receiving  # the request body is still arriving
        self.received = 0
        self.started = False  # response headers sent
        self.done = False  # response finished (END_STREAM or reset)
        self.send_remaining = -1  # declared content-length still to send, -1 if none
        self.stop_upload = False  # the body passed the limit: RST_STREAM(NO_ERROR) at the end


class Http2Session:
    """One HTTP/2 connection, server side, without I/O: the part that is not the engine's."""

    def __init__(
        self,
        *,
        defaults: ResponseDefaults | None = None,
        scheme: str = "https",
        max_concurrent_streams: int = 100,
        max_header_list_size: int = 65536,
        max_body_bytes: int = 64 * 1024 * 1024,
        rapid_reset_limit: int = 100,
        rapid_reset_window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_engine(max_concurrent_streams, max_header_list_size)
        self._defaults = defaults if defaults is not None else ResponseDefaults()
        self._scheme = scheme
        self._max_streams = max_concurrent_streams
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._streams: dict[int, Stream] = {}
        self._resets: deque[float] = deque(maxlen=max(1, rapid_reset_limit))
        self._reset_window = rapid_reset_window
        self._draining = False
        self._goaway_stream_id = 0
        self.closed = False
        self.streams_opened = 0
        self.streams_reset_by_peer = 0

    # -- the engine's part -------------------------------------------------------------------

    def _open_engine(self, max_concurrent_streams: int, max_header_list_size: int) -> None:
        raise NotImplementedError

    def _send_headers(self, stream_id: int, fields: Headers, end_stream: bool) -> bool:
        """Queue the response's HEADERS; False if the stream closed meanwhile."""
        raise NotImplementedError

    def _send_interim(self, stream_id: int, fields: Headers) -> None:
        raise NotImplementedError

    def _end(self, stream_id: int) -> None:
        """END_STREAM after the body sent so far."""
        raise NotImplementedError

    def _ack(self, stream_id: int, size: int) -> None:
        raise NotImplementedError

    def _reset(self, stream_id: int, error_code: int) -> None:
        raise NotImplementedError

    def _stop_upload(self, stream_id: int) -> None:
        """RST_STREAM(NO_ERROR): the response is complete, the rest of the body is unwanted."""
        raise NotImplementedError

    def _last_stream_id(self) -> int:
        raise NotImplementedError

    def _goaway_notice(self) -> None:
        """The drain's first GOAWAY, which leaves in-flight streams (and those crossing it)
        to go on."""
        raise NotImplementedError

    def _terminate(self, last_stream_id: int, error_code: int) -> None:
        """The final GOAWAY."""
        raise NotImplementedError

    # -- start -------------------------------------------------------------------------------

    def _upgrade_failed(self, reason: str) -> list[H2Event]:
        self.closed = True
        return [ConnectionClosed(_CODES.PROTOCOL_ERROR, reason)]

    def _upgraded(self, request: Request) -> list[H2Event]:
        """The events of an h2c upgrade's request (already complete) as stream 1."""
        self.streams_opened += 1
        self._streams[1] = Stream(request.method == b"HEAD", False)
        upgraded = Request(
            1, request.method, request.target,
            [(n, v) for n, v in request.headers if n not in UPGRADE_HEADERS],
            "2", request.authority, self._scheme, request.content_length, False,
        )
        return [upgraded, EndBody(1)]

    # -- input -------------------------------------------------------------------------------

    def _open(self, stream_id: int, method: bytes, path: bytes, headers: Headers,
              authority: bytes, content_length: int | None, ended: bool,
              receiving: bool) -> Request:
        """Record a new stream; its Request, which the server's chain answers itself when
        `refused` (an unfinished upload is then stopped after the answer: stream_finished)."""
        self.streams_opened += 1
        refused = 0
        if method == b"CONNECT":
            refused = 501
        elif not valid_host(authority):  # RFC 3986 host[:port], as HTTP/1 checks Host
            refused = 400
        elif content_length is not None and content_length > self._max_body_bytes:
            refused = 413
        self._streams[stream_id] = Stream(method == b"HEAD", receiving)
        return Request(stream_id, method, path, headers, "2", authority, self._scheme,
                       content_length, not ended, refused)

    def _take_body(self, stream_id: int, stream: Stream, data: bytes,
                   out: list[H2Event]) -> None:
        """DATA for a stream still receiving: a Body, or BodyTooLarge past the limit."""
        stream.received += len(data)
        if stream.received > self._max_body_bytes:
            self._ack(stream_id, len(data))
            stream.receiving = False
            stream.stop_upload = True
            out.append(BodyTooLarge(stream_id))
            return
        if data:
            out.append(Body(stream_id, data))

    def _stream_reset(self, stream_id: int, remote: bool, out: list[H2Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.done:
            return
        stream.done = True
        stream.receiving = False
        out.append(StreamReset(stream_id))
        if not remote:
            return
        self.streams_reset_by_peer += 1
        now = self._clock()
        resets = self._resets
        resets.append(now)
        if len(resets) == resets.maxlen and now - resets[0] <= self._reset_window:
            self.close(_CODES.ENHANCE_YOUR_CALM)
            out.append(ConnectionClosed(_CODES.ENHANCE_YOUR_CALM, "too many stream resets"))

    # -- output ------------------------------------------------------------------------------

    def send_response(self, stream_id: int, status: int, headers: Headers) -> None:
        stream = self._streams[stream_id]
        if stream.started:
            raise RuntimeError("response already started")
        if status < 200 or status > 599:
            raise ValueError(f"invalid final status {status}")
        fields, stream.send_remaining = response_fields(
            status, headers, self._defaults, DROPPED_RESPONSE_HEADERS
        )
        stream.started = True  # only now: a refused header block still allows a 500
        if stream.done or self.closed:
            return  # reset or connection over meanwhile: nothing may be sent
        bodyless = stream.head or status == 204 or status == 304
        if not self._send_headers(stream_id, fields, bodyless) or bodyless:
            stream.done = True

    def send_interim(self, stream_id: int, status: int, headers: Headers) -> None:
        """A 1xx HEADERS frame (103 Early Hints) ahead of the response, without END_STREAM."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.started or stream.done or self.closed:
            return
        self._send_interim(stream_id, interim_fields(status, headers, DROPPED_RESPONSE_HEADERS))

    def body_allowed(self, stream_id: int) -> bool:
        """False once nothing more may be sent (HEAD/204/304 already ended, reset, finished)."""
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.done

    def end_stream(self, stream_id: int) -> None:
        stream = self._streams[stream_id]
        if stream.done or self.closed:
            return
        if stream.send_remaining > 0:
            self._reset(stream_id, _CODES.INTERNAL_ERROR)
            raise RuntimeError("response body shorter than its content-length")
        stream.done = True
        self._end(stream_id)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed `size` body bytes of this stream: grant the peer that window."""
        if size:
            self._ack(stream_id, size)

    def reset(self, stream_id: int, error_code: int = _CODES.CANCEL) -> None:
        """Abort one stream (app failure after the response started, timeouts)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.done = True
            stream.receiving = False
        self._reset(stream_id, error_code)

    def stream_finished(self, stream_id: int) -> None:
        """The app task of this stream is over: forget it (and stop an upload nobody reads)."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None and (stream.receiving or stream.stop_upload) and not self.closed:
            stream.receiving = False
            self._stop_upload(stream_id)

    # -- connection --------------------------------------------------------------------------

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def draining(self) -> bool:
        return self._draining

    def start_drain(self) -> None:
        """Graceful shutdown: GOAWAY now, in-flight streams continue, new ones are refused."""
        if self._draining or self.closed:
            return
        self._draining = True
        self._goaway_stream_id = self._last_stream_id()
        if not self._streams:
            self.close()
            return
        self._goaway_notice()

    def close(self, error_code: int = _CODES.NO_ERROR) -> None:
        """Final GOAWAY; flush data_to_send() and close the transport after this."""
        if self.closed:
            return
        self.closed = True
        last = self._goaway_stream_id if self._draining else self._last_stream_id()
        self._terminate(last, error_code)
