"""HTTP/2 server adapter around libnghttp2, sans-IO: the same interface and events as
Http2Adapter (gateway/protocol/http2.py), at a fraction of its cost per request.

nghttp2 parses, frames and keeps the stream states; its callbacks run in C
(nghttp2_glue.c), check request sections by http2.py's rules (RFC 9113 §8.1-8.3: pseudo-
headers, field names and values, connection-specific fields, TE, :authority against Host,
content-length against DATA) and leave packed event records that receive_data() turns into
events in one pass. The rest is done as http2.py does it: the flood guard (counted in C,
frame by frame), rapid reset, the header-list limit, refused requests (400, 413, 501),
streams whose app still runs counting against the stream limit, the drain's GOAWAY.

Flow control: nghttp2's automatic WINDOW_UPDATE is off; acknowledge() consumes what the
app read, so a stream that is not read holds at most one 64 KiB window.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import itertools
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import h2.errors

from gateway.protocol.events import Body, BodyTooLarge, EndBody, Headers, Request, StreamReset
from gateway.protocol.http2 import (
    _DROPPED_RESPONSE_HEADERS,
    _UPGRADE_HEADERS,
    CONNECTION_WINDOW,
    FLOOD_BASE,
    STREAM_WINDOW,
    ConnectionClosed,
    H2Event,
    WindowOpened,
)
from gateway.protocol.request_fields import valid_host
from gateway.protocol.response_headers import ResponseDefaults, interim_fields, response_fields

# the cffi extension that gateway/protocol/nghttp2_build.py compiles (`make bridge`)
_module = importlib.import_module("gateway.protocol._nghttp2")
ffi: Any = _module.ffi
lib: Any = _module.lib
_RECORD: Final = struct.Struct("<BBxxiIq")  # see nghttp2_glue.h
_CODES: Final = h2.errors.ErrorCodes
_CLOSED_REASONS: Final = {
    lib.GW_CLOSED_FLOOD: "control-frame flood",
    lib.GW_CLOSED_HEADERS: "header list too large",
    lib.GW_CLOSED_PROTOCOL: "protocol error",
    lib.GW_CLOSED_CONTINUATIONS: "too many CONTINUATION frames",
}
_chain = itertools.chain.from_iterable


class _Stream:
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


def _join_cookies(headers: Headers) -> Headers:
    """RFC 9113 §8.2.3: crumbs rejoined, at the first one's place, for HTTP/1-style apps."""
    crumbs = [value for name, value in headers if name == b"cookie"]
    out: Headers = []
    for name, value in headers:
        if name != b"cookie":
            out.append((name, value))
        elif crumbs:
            out.append((name, b"; ".join(crumbs)))
            crumbs = []
    return out


class Nghttp2Adapter:
    """One HTTP/2 connection, server side, without I/O, on nghttp2."""

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
        handle = lib.gw_h2_new(max_concurrent_streams, max_header_list_size, FLOOD_BASE)
        if handle == ffi.NULL:
            raise MemoryError("nghttp2 session")
        self._h: Any = ffi.gc(handle, lib.gw_h2_free)
        self._out: Any = ffi.new("const uint8_t **")
        self._defaults = defaults if defaults is not None else ResponseDefaults()
        self._scheme = scheme
        self._max_streams = max_concurrent_streams
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._streams: dict[int, _Stream] = {}
        self._resets: deque[float] = deque(maxlen=max(1, rapid_reset_limit))
        self._reset_window = rapid_reset_window
        self._draining = False
        self._goaway_stream_id = 0
        self.closed = False
        self.streams_opened = 0
        self.streams_reset_by_peer = 0

    # -- start -------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Start a connection chosen by ALPN or by the prior-knowledge preface."""
        lib.gw_h2_initiate(self._h, STREAM_WINDOW, CONNECTION_WINDOW)

    def initiate_upgrade(self, settings: bytes, request: Request) -> list[H2Event]:
        """Start after an h2c upgrade: `request` (already complete) becomes stream 1."""
        head = request.method == b"HEAD"
        try:  # HTTP2-Settings is base64url without padding (RFC 7540 §3.2.1)
            payload = base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
        except (ValueError, binascii.Error) as exc:
            payload, error = b"", str(exc)
        else:
            error = ""
        if not error and lib.gw_h2_upgrade(self._h, payload, len(payload), head) != 0:
            error = "invalid HTTP2-Settings"
        if error:
            self.closed = True
            return [ConnectionClosed(_CODES.PROTOCOL_ERROR, error)]
        self.initiate()
        self.streams_opened += 1
        self._streams[1] = _Stream(head, False)
        upgraded = Request(
            1, request.method, request.target,
            [(n, v) for n, v in request.headers if n not in _UPGRADE_HEADERS],
            "2", request.authority, self._scheme, request.content_length, False,
        )
        return [upgraded, EndBody(1)]

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[H2Event]:
        out: list[H2Event] = []
        if self.closed:
            return out
        size = lib.gw_h2_receive(self._h, data, len(data), self._out)
        if not size:
            return out
        records = ffi.buffer(self._out[0], size)[:]
        unpack = _RECORD.unpack_from
        offset = 0
        while offset < size:
            kind, flags, stream_id, length, aux = unpack(records, offset)
            offset += 20
            if kind == lib.GW_EV_DATA:
                self._on_data(stream_id, records[offset : offset + length], out)
            elif kind == lib.GW_EV_REQUEST:
                self._on_request(stream_id, flags, aux, records[offset : offset + length], out)
            elif kind == lib.GW_EV_END:
                stream = self._streams.get(stream_id)
                if stream is not None and stream.receiving:
                    stream.receiving = False
                    out.append(EndBody(stream_id))
            elif kind == lib.GW_EV_WINDOW:
                out.append(WindowOpened(stream_id))
            elif kind == lib.GW_EV_RESET:
                self._on_reset(stream_id, bool(flags & lib.GW_FLAG_REMOTE), out)
                if self.closed:
                    return out
            elif kind == lib.GW_EV_GOAWAY:
                self.closed = True
                out.append(ConnectionClosed(aux, "peer sent GOAWAY"))
                return out
            elif kind == lib.GW_EV_CLOSED:
                self.closed = True
                out.append(ConnectionClosed(aux, _CLOSED_REASONS.get(flags, "closed")))
                return out
            offset += length
        return out

    def _on_request(self, stream_id: int, flags: int, length: int, payload: bytes,
                    out: list[H2Event]) -> None:
        if (self._draining and stream_id > self._goaway_stream_id) or (
            len(self._streams) >= self._max_streams  # includes apps still running after a reset
        ):
            lib.gw_h2_reset(self._h, stream_id, _CODES.REFUSED_STREAM)
            return
        parts = payload.split(b"\0")
        method, path, authority, host = parts[:4]
        fields = iter(parts[4:-1])
        headers = list(zip(fields, fields, strict=True))
        if flags & lib.GW_FLAG_COOKIES:
            headers = _join_cookies(headers)
        self.streams_opened += 1
        authority = authority or host
        content_length = length if length >= 0 else None
        refused = 0
        if method == b"CONNECT":
            refused = 501
        elif not valid_host(authority):  # RFC 3986 host[:port], as HTTP/1 checks Host
            refused = 400
        elif content_length is not None and content_length > self._max_body_bytes:
            refused = 413
        ended = bool(flags & lib.GW_FLAG_END_STREAM)
        # receiving stays True until the end of the stream, which becomes EndBody
        self._streams[stream_id] = _Stream(method == b"HEAD", not ended)
        out.append(Request(stream_id, method, path, headers, "2", authority, self._scheme,
                           content_length, not ended, refused))
        if ended:
            out.append(EndBody(stream_id))

    def _on_data(self, stream_id: int, data: bytes, out: list[H2Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.receiving:
            self._ack(stream_id, len(data))  # nobody will read it: hand the window back
            return
        stream.received += len(data)
        if stream.received > self._max_body_bytes:
            self._ack(stream_id, len(data))
            stream.receiving = False
            stream.stop_upload = True
            out.append(BodyTooLarge(stream_id))
            return
        if data:
            out.append(Body(stream_id, data))

    def _on_reset(self, stream_id: int, remote: bool, out: list[H2Event]) -> None:
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

    def data_to_send(self) -> bytes:
        size = lib.gw_h2_send(self._h, self._out)
        return ffi.buffer(self._out[0], size)[:] if size else b""

    def send_response(self, stream_id: int, status: int, headers: Headers) -> None:
        stream = self._streams[stream_id]
        if stream.started:
            raise RuntimeError("response already started")
        if status < 200 or status > 599:
            raise ValueError(f"invalid final status {status}")
        # connection-specific headers are illegal in HTTP/2 (RFC 9113 §8.2.2)
        fields, stream.send_remaining = response_fields(
            status, headers, self._defaults, _DROPPED_RESPONSE_HEADERS
        )
        stream.started = True  # only now: a refused header block still allows a 500
        if stream.done or self.closed:
            return  # reset or connection over meanwhile: nothing may be sent
        bodyless = stream.head or status == 204 or status == 304
        # checked by response_fields: no NUL in names or values, so NUL separates them
        blob = b"\0".join(_chain(fields)) + b"\0"
        if lib.gw_h2_respond(self._h, stream_id, blob, len(blob), not bodyless) != 0:
            stream.done = True  # the stream closed meanwhile
        elif bodyless:
            stream.done = True

    def send_interim(self, stream_id: int, status: int, headers: Headers) -> None:
        """A 1xx HEADERS frame (103 Early Hints) ahead of the response, without END_STREAM."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.started or stream.done or self.closed:
            return
        fields = interim_fields(status, headers, _DROPPED_RESPONSE_HEADERS)
        blob = b"\0".join(_chain(fields)) + b"\0"
        lib.gw_h2_interim(self._h, stream_id, blob, len(blob))

    def body_allowed(self, stream_id: int) -> bool:
        """False once nothing more may be sent (HEAD/204/304 already ended, reset, finished)."""
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.done

    def sendable(self, stream_id: int) -> int:
        """How many body bytes may go out now on this stream (0: wait for WindowOpened)."""
        return int(lib.gw_h2_sendable(self._h, stream_id))

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of data as the windows allow; return how many bytes were taken."""
        stream = self._streams[stream_id]
        if stream.done or self.closed:
            return len(data)  # HEAD/204/304, reset or connection over: the body is discarded
        if stream.send_remaining >= 0 and len(data) > stream.send_remaining:
            raise RuntimeError("response body longer than its content-length")
        size: int = min(len(data), lib.gw_h2_sendable(self._h, stream_id))
        if not size:
            return 0
        # the bytes that complete a declared content-length carry END_STREAM themselves
        last = size == stream.send_remaining
        chunk = data if size == len(data) else data[:size]
        if lib.gw_h2_push(self._h, stream_id, ffi.from_buffer(chunk), size, last) < 0:
            stream.done = True  # the stream closed meanwhile
            return len(data)
        if stream.send_remaining >= 0:
            stream.send_remaining -= size
        if last:
            stream.done = True
        return size

    def end_stream(self, stream_id: int) -> None:
        stream = self._streams[stream_id]
        if stream.done or self.closed:
            return
        if stream.send_remaining > 0:
            self._reset(stream_id, _CODES.INTERNAL_ERROR)
            raise RuntimeError("response body shorter than its content-length")
        stream.done = True
        lib.gw_h2_push(self._h, stream_id, ffi.NULL, 0, 1)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed `size` body bytes of this stream: grant the peer that window."""
        if size:
            self._ack(stream_id, size)

    def _ack(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            lib.gw_h2_consume(self._h, stream_id, size)

    def reset(self, stream_id: int, error_code: int = _CODES.CANCEL) -> None:
        """Abort one stream (app failure after the response started, timeouts)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.done = True
            stream.receiving = False
        self._reset(stream_id, error_code)

    def _reset(self, stream_id: int, error_code: int) -> None:
        if not self.closed:
            lib.gw_h2_reset(self._h, stream_id, error_code)

    def stream_finished(self, stream_id: int) -> None:
        """The app task of this stream is over: forget it (and stop an upload nobody reads)."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None and (stream.receiving or stream.stop_upload) and not self.closed:
            stream.receiving = False
            lib.gw_h2_stop_upload(self._h, stream_id)

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
        self._goaway_stream_id = lib.gw_h2_last_stream(self._h)
        if not self._streams:
            self.close()
            return
        # nghttp2's own GOAWAY would make it ignore streams that crossed it in flight: this
        # one leaves it accepting them, so that they are refused (REFUSED_STREAM) as h2 does
        lib.gw_h2_goaway_notice(self._h, self._goaway_stream_id, _CODES.NO_ERROR)

    def close(self, error_code: int = _CODES.NO_ERROR) -> None:
        """Final GOAWAY; flush data_to_send() and close the transport after this."""
        if self.closed:
            return
        self.closed = True
        last = self._goaway_stream_id if self._draining else lib.gw_h2_last_stream(self._h)
        lib.gw_h2_terminate(self._h, last, error_code)
