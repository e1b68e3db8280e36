"""HTTP/2 server adapter around libnghttp2, sans-IO: the same interface and events as
Http2Adapter (gateway/protocol/http2.py), at a fraction of its cost per request.

nghttp2 parses, frames and keeps the stream states; its callbacks run in C
(nghttp2_glue.c), check request sections by http2.py's rules (RFC 9113 §8.1-8.3: pseudo-
headers, field names and values, connection-specific fields, TE, :authority against Host,
content-length against DATA) and leave packed event records that receive_data() turns into
events in one pass. The rest is done as http2.py does it: the flood guard (counted in C,
frame by frame), rapid reset, the header-list limit, refused requests (400, 413, 501),
streams whose app still runs counting against the stream limit, the drain's GOAWAY; what
is not nghttp2's is Http2Session's, shared with http2.py (gateway/protocol/http2_common.py).

Flow control: nghttp2's automatic WINDOW_UPDATE is off; acknowledge() consumes what the
app read, so a stream that is not read holds at most one 64 KiB window.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import itertools
import struct
from typing import Any, Final

import h2.errors

from gateway.protocol.events import EndBody, Headers, Request
from gateway.protocol.http2_common import (
    CONNECTION_WINDOW,
    FLOOD_BASE,
    STREAM_WINDOW,
    ConnectionClosed,
    H2Event,
    Http2Session,
    WindowOpened,
)

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


class Nghttp2Adapter(Http2Session):
    """One HTTP/2 connection, server side, without I/O, on nghttp2."""

    def _open_engine(self, max_concurrent_streams: int, max_header_list_size: int) -> None:
        handle = lib.gw_h2_new(max_concurrent_streams, max_header_list_size, FLOOD_BASE)
        if handle == ffi.NULL:
            raise MemoryError("nghttp2 session")
        self._h: Any = ffi.gc(handle, lib.gw_h2_free)
        self._out: Any = ffi.new("const uint8_t **")

    # -- start -------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Start a connection chosen by ALPN or by the prior-knowledge preface."""
        lib.gw_h2_initiate(self._h, STREAM_WINDOW, CONNECTION_WINDOW)

    def initiate_upgrade(self, settings: bytes, request: Request) -> list[H2Event]:
        """Start after an h2c upgrade: `request` (already complete) becomes stream 1."""
        try:  # HTTP2-Settings is base64url without padding (RFC 7540 §3.2.1)
            payload = base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
        except (ValueError, binascii.Error) as exc:
            payload, error = b"", str(exc)
        else:
            error = ""
        head = request.method == b"HEAD"
        if not error and lib.gw_h2_upgrade(self._h, payload, len(payload), head) != 0:
            error = "invalid HTTP2-Settings"
        if error:
            return self._upgrade_failed(error)
        self.initiate()
        return self._upgraded(request)

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
                self._stream_reset(stream_id, bool(flags & lib.GW_FLAG_REMOTE), out)
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
        ended = bool(flags & lib.GW_FLAG_END_STREAM)
        # receiving stays True until the end of the stream, which becomes EndBody
        out.append(self._open(stream_id, method, path, headers, authority or host,
                              length if length >= 0 else None, ended, not ended))
        if ended:
            out.append(EndBody(stream_id))

    def _on_data(self, stream_id: int, data: bytes, out: list[H2Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.receiving:
            self._ack(stream_id, len(data))  # nobody will read it: hand the window back
            return
        self._take_body(stream_id, stream, data, out)

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        size = lib.gw_h2_send(self._h, self._out)
        return ffi.buffer(self._out[0], size)[:] if size else b""

    def _send_headers(self, stream_id: int, fields: Headers, end_stream: bool) -> bool:
        # checked by response_fields: no NUL in names or values, so NUL separates them
        blob = b"\0".join(_chain(fields)) + b"\0"
        rv: int = lib.gw_h2_respond(self._h, stream_id, blob, len(blob), not end_stream)
        return rv == 0  # else the stream closed meanwhile

    def _send_interim(self, stream_id: int, fields: Headers) -> None:
        blob = b"\0".join(_chain(fields)) + b"\0"
        lib.gw_h2_interim(self._h, stream_id, blob, len(blob))

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

    def _end(self, stream_id: int) -> None:
        lib.gw_h2_push(self._h, stream_id, ffi.NULL, 0, 1)

    def _ack(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            lib.gw_h2_consume(self._h, stream_id, size)

    def _reset(self, stream_id: int, error_code: int) -> None:
        if not self.closed:
            lib.gw_h2_reset(self._h, stream_id, error_code)

    def _stop_upload(self, stream_id: int) -> None:
        lib.gw_h2_stop_upload(self._h, stream_id)

    # -- connection --------------------------------------------------------------------------

    def _last_stream_id(self) -> int:
        return int(lib.gw_h2_last_stream(self._h))

    def _goaway_notice(self) -> None:
        # nghttp2's own GOAWAY would make it ignore streams that crossed it in flight: this
        # one leaves it accepting them, so that they are refused (REFUSED_STREAM) as h2 does
        lib.gw_h2_goaway_notice(self._h, self._goaway_stream_id, _CODES.NO_ERROR)

    def _terminate(self, last_stream_id: int, error_code: int) -> None:
        lib.gw_h2_terminate(self._h, last_stream_id, error_code)
