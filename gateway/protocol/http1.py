"""HTTP/1.1 server adapter, sans-IO: bytes in, events out, response bytes back.

Two request parsers sit behind one interface and must behave identically:
``httptools`` (llhttp, the fast path) and ``h11`` (the strict pure-Python reference).
The adapter itself owns the receive buffer, finds each request head, enforces the size
limits (which httptools lacks), decides framing and keep-alive, and serialises responses,
so the only thing a backend does is parse one head and decode one chunked body.

Requests are handled strictly one at a time: after a request's body is complete the
adapter answers ``Wait.PAUSED`` until the response is finished (``start_next_cycle``), so a
pipelined request's head and body are not parsed before the current one is answered.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Protocol

import h11
import httptools

from gateway.protocol.events import Body, EndBody, Headers, ProtocolError, Request
from gateway.protocol.request_fields import valid_host
from gateway.protocol.response_headers import REASONS, ResponseDefaults, check_header

PARSERS: Final = ("httptools", "h11")
H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Wait(enum.Enum):
    NEED_DATA = "need-data"  # feed more bytes with receive_data()
    PAUSED = "paused"  # finish the current response, then call start_next_cycle()


@dataclass(frozen=True, slots=True)
class SwitchToH2:
    """The connection speaks HTTP/2 from here on (prior-knowledge preface or h2c upgrade)."""

    data: bytes  # bytes already received that belong to HTTP/2: replay them
    reply: bytes = b""  # write this first (the 101 response of an h2c upgrade)
    request: Request | None = None  # h2c: the upgraded request, answered on stream 1
    settings: bytes = b""  # h2c: the HTTP2-Settings header value


H1Event = Request | Body | EndBody | ProtocolError | SwitchToH2 | Wait

# Methods llhttp knows; h11 accepts any token, so both reject the rest with 501.
_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
# found leniently in a head that did not parse, to pick the form of its error answer
_ACCEPT_LINE: Final = re.compile(rb"\naccept[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_REQUEST_LINE: Final = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])"
)
_FRAMING_NAMES: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade",
     b"http2-settings")
)
# h11's grammar, so both parsers agree: extensions are discarded, whatever they hold
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\n]*)?[ \t]*")
# nginx's NGX_MAX_OFF_T_VALUE: a chunk size (or a body) beyond it is malformed, 400
MAX_CHUNK_SIZE: Final = (1 << 63) - 1
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")
_FIELD_CONTINUATION: Final = re.compile(rb"[ \t]+(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?[ \t]*")
_FIELD_LINE: Final = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?[ \t]*"
)
# h11 lets C0 controls through in header values; llhttp rejects them: align on rejecting
_CTL: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FOLDED: Final = re.compile(rb"\n[ \t]")
_NOTHING: Final = b""
_CONTENT_LENGTH_LINE: Final = re.compile(rb"\r\ncontent-length:[ \t]*([^\r]*)", re.IGNORECASE)

_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _DONE, _CLOSED = range(5)
_NO_BODY, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)
_END_BODY: Final = EndBody(1)
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_SWITCHING: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)
_STATUS_LINES: Final = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, b"")) for code in range(100, 600)
}
_HOP_BY_HOP: Final = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"upgrade",
     b"proxy-connection", b"date", b"server")
)
MAX_BODY_EVENT: Final = 65536  # largest Body event, so a big read is handed over in slices


class _Reject(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _promised(received: int, pending: int, limit: int) -> None:
    """Judge a body by what its chunk headers announce, before the bytes come, as nginx
    does: `received` bytes so far plus `pending` announced but not yet received."""
    if pending > MAX_CHUNK_SIZE or received + pending > MAX_CHUNK_SIZE:
        raise _Reject(400, "chunk size too large")
    if received + pending > limit:
        raise _Reject(413, "request body larger than the limit")


class _ChunkDecoder(Protocol):
    def decode(self, data: bytes, pos: int, end: int) -> tuple[list[bytes], int, bool]:
        """Decode data[pos:end]; return (body pieces, new position, body finished)."""
        ...


class _Backend(Protocol):
    def parse_head(self, data: bytes, start: int, end: int) -> Headers:
        """Parse the head data[start:end] (ending in CRLFCRLF); lower-case names."""
        ...

    def chunk_decoder(self, max_body: int) -> _ChunkDecoder:
        """A decoder for one chunked body of at most `max_body` bytes."""
        ...


class _ChunkedReader:
    """Strict chunked decoder (RFC 9112 §7.1) with h11's grammar, for the httptools path."""

    __slots__ = ("_max_body", "_max_line", "_need_crlf", "_received", "_remaining", "_trailer")

    def __init__(self, max_line: int, max_body: int) -> None:
        self._max_line = max_line
        self._max_body = max_body
        self._received = 0  # body bytes of the chunks completed so far
        self._remaining = 0
        self._need_crlf = False
        self._trailer = False

    def decode(self, data: bytes, pos: int, end: int) -> tuple[list[bytes], int, bool]:
        out: list[bytes] = []
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                self._need_crlf = self._remaining == 0
                continue
            if self._need_crlf:
                # the CRLF after chunk data must be exact (h11 CVE-2025-43859)
                have = min(2, end - pos)
                if data[pos : pos + have] != b"\r\n"[:have]:
                    raise _Reject(400, "malformed chunk terminator")
                if have < 2:
                    break
                pos += 2
                self._need_crlf = False
                continue
            if self._trailer:  # discarded, but validated the way h11 does
                if data.startswith(b"\n", pos):
                    return out, pos + 1, True
                if data.startswith(b"\r\n", pos):
                    return out, pos + 2, True
                blank = _BLANK_LINE.search(data, pos, end)
                if blank is None:
                    if end - pos > self._max_line:
                        raise _Reject(431, "trailer section too large")
                    break
                lines = data[pos : blank.start()].split(b"\n")
                for index, line in enumerate(lines):
                    line = line.removesuffix(b"\r")
                    folded = line[:1] in (b" ", b"\t")
                    if folded and index == 0:
                        raise _Reject(400, "continuation line at start of trailers")
                    grammar = _FIELD_CONTINUATION if folded else _FIELD_LINE
                    if grammar.fullmatch(line) is None:
                        raise _Reject(400, "malformed trailer field")
                return out, blank.end(), True
            eol = data.find(b"\r\n", pos, end)
            if eol < 0:
                if end - pos > self._max_line:
                    raise _Reject(431, "chunk header too long")
                break
            match = _CHUNK_LINE.fullmatch(data, pos, eol)
            if match is None:
                raise _Reject(400, "malformed chunk size")
            size = int(match[1], 16)
            _promised(self._received, size, self._max_body)
            self._received += size
            pos = eol + 2
            if size:
                self._remaining = size
            else:
                self._trailer = True
        return out, pos, False


class _HttptoolsBackend:
    __slots__ = ("_headers", "_max_line", "_parser", "_reusable")

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._parser: httptools.HttpRequestParser | None = None
        self._reusable = False
        self._headers: Headers = []

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if value and value[-1] in (0x20, 0x09):  # llhttp keeps trailing OWS, h11 strips it
            value = value.rstrip(b" \t")
        self._headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        self._reusable = True

    def parse_head(self, data: bytes, start: int, end: int) -> Headers:
        parser = self._parser
        if parser is None or not self._reusable:
            # llhttp still expects the previous body (we decode bodies ourselves): start afresh
            parser = httptools.HttpRequestParser(self)
            # we reject CL+TE and unknown codings ourselves, with the same status as h11
            parser.set_dangerous_leniencies(
                lenient_chunked_length=True, lenient_transfer_encoding=True
            )
            self._parser = parser
        self._reusable = False
        headers: Headers = []
        self._headers = headers
        try:
            # the whole buffer as it is, most of the time: no view to make
            parser.feed_data(
                data if start == 0 and end == len(data) else memoryview(data)[start:end]
            )
        except httptools.HttpParserUpgrade:
            self._reusable = False  # llhttp pauses after Upgrade/CONNECT heads
        except httptools.HttpParserError as exc:
            self._parser = None
            reason = str(exc)
            raise _Reject(501 if "Transfer-Encoding" in reason else 400, reason) from None
        return headers

    def chunk_decoder(self, max_body: int) -> _ChunkDecoder:
        return _ChunkedReader(self._max_line, max_body)


class _H11Chunks:
    __slots__ = ("_conn", "_max_body", "_received")

    def __init__(self, conn: h11.Connection, max_body: int) -> None:
        self._conn = conn
        self._max_body = max_body
        self._received = 0

    def decode(self, data: bytes, pos: int, end: int) -> tuple[list[bytes], int, bool]:
        conn = self._conn
        if end > pos:
            conn.receive_data(data[pos:end])
        out: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint, str(exc)) from None
            if isinstance(event, h11.EndOfMessage):
                return out, end - len(conn.trailing_data[0]), True
            if isinstance(event, h11.Data):
                out.append(bytes(event.data))
                self._received += len(event.data)
            # h11 keeps a parsed chunk size to itself (its reader's count of bytes to come);
            # judged after each step, so at the same point as _ChunkedReader judges it
            pending = getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0)
            _promised(self._received, pending, self._max_body)
            if not isinstance(event, h11.Data):
                return out, end, False


class _H11Backend:
    __slots__ = ("_conn", "_max_line")

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._conn: h11.Connection | None = None

    def parse_head(self, data: bytes, start: int, end: int) -> Headers:
        block = data[start:end]
        if _CTL.search(block) is not None:
            raise _Reject(400, "invalid byte in header")
        # a fresh h11 connection per request: responses are serialised by the adapter, not h11
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_line)
        conn.receive_data(block)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Reject(exc.error_status_hint, str(exc)) from None
        if not isinstance(event, h11.Request):
            raise _Reject(400, "incomplete request head")
        # h11 merges duplicate or list-valued Content-Length; llhttp rejects them: align
        lengths = _CONTENT_LENGTH_LINE.findall(block)
        if len(lengths) > 1 or (lengths and not lengths[0].rstrip(b" \t").isdigit()):
            raise _Reject(400, "invalid Content-Length")
        self._conn = conn
        return list(event.headers)

    def chunk_decoder(self, max_body: int) -> _ChunkDecoder:
        assert self._conn is not None
        return _H11Chunks(self._conn, max_body)


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip(b" \t") for token in value.lower().split(b",")}


class Http1Adapter:
    """One HTTP/1.x connection, server side, without I/O.

    Feed bytes with receive_data(), pull events with next_event(); answer with
    send_response()/send_data()/send_end() (they return the bytes to write), then call
    start_next_cycle(). After a ProtocolError answer with send_response() and close.
    """

    def __init__(
        self,
        *,
        parser: str = "httptools",
        defaults: ResponseDefaults | None = None,
        scheme: str = "http",
        max_request_line: int = 8192,
        max_header_bytes: int = 16384,
        max_body_bytes: int = 64 * 1024 * 1024,
        allow_h2: bool = True,
    ) -> None:
        line_limit = max_request_line + max_header_bytes + 4
        backend: _Backend
        if parser == "httptools":
            backend = _HttptoolsBackend(line_limit)
        elif parser == "h11":
            backend = _H11Backend(line_limit)
        else:
            raise ValueError(f"unknown HTTP/1 parser {parser!r}; choose one of {PARSERS}")
        self.parser = parser
        self._backend = backend
        self._defaults = defaults if defaults is not None else ResponseDefaults()
        self._scheme = scheme
        self._max_request_line = max_request_line
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._allow_h2 = allow_h2
        self._data = b""
        self._pos = 0
        self._state = _HEAD
        self._scanned = 0  # bytes after _pos known to hold no complete head
        self._eol = -1  # end of the request line after _pos, once seen
        # method, target and fields of the head being checked, for the answer to a refusal
        self._parsed: tuple[bytes, bytes, Headers] | None = None
        self._draining = False
        self.requests = 0  # requests whose head was parsed on this connection
        self._reset_request()

    def _reset_request(self) -> None:
        self._remaining = 0
        self._decoder: _ChunkDecoder | None = None
        self._body_seen = 0
        self._keep_alive = False
        self._http10 = False
        self._head = False
        self._expect_continue = False
        self._response_started = False
        self._response_done = False
        self._mode = _NO_BODY
        self._send_remaining = 0

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._pos:
            self._data = self._data[self._pos :] + data
            self._pos = 0
        elif self._data:
            self._data += data
        else:
            self._data = data

    @property
    def buffered(self) -> int:
        """Received bytes not yet turned into events (the server pauses reading above a mark)."""
        return len(self._data) - self._pos

    @property
    def idle(self) -> bool:
        """Between requests with nothing of the next one received."""
        return self._state == _HEAD and len(self._data) == self._pos

    @property
    def awaiting_head(self) -> bool:
        return self._state == _HEAD

    @property
    def reading_body(self) -> bool:
        """The current request's body has not been received completely."""
        return self._state in (_BODY_LENGTH, _BODY_CHUNKED)

    def next_event(self) -> H1Event:
        state = self._state
        try:
            if state == _HEAD:
                return self._next_head()
            if state == _BODY_LENGTH:
                return self._next_length_body()
            if state == _BODY_CHUNKED:
                return self._next_chunked_body()
        except _Reject as exc:
            return self._reject(exc.status, exc.reason)
        return Wait.PAUSED

    def skip_empty_body(self) -> bool:
        """Right after a Request event: True if the request has no body at all (no
        Content-Length, or 0), now received whole as if its EndBody had been taken."""
        if self._state == _BODY_LENGTH and self._remaining == 0:
            self._state = _DONE
            return True
        return False

    def _consume(self, pos: int) -> None:
        self._scanned = 0
        self._eol = -1
        if pos >= len(self._data):
            self._data = b""
            self._pos = 0
        else:
            self._pos = pos

    def _next_head(self) -> H1Event:
        data = self._data
        pos = self._pos
        size = len(data)
        # RFC 9112 §2.2: ignore empty lines before a request
        if pos < size and data[pos] == 13 and data.startswith(b"\r\n", pos):
            while data.startswith(b"\r\n", pos):
                pos += 2
            self._pos = pos
            self._scanned = 0
            self._eol = -1
        if pos >= size:
            self._consume(pos)
            return Wait.NEED_DATA
        if self.requests == 0 and self._allow_h2 and data[pos] == 0x50:  # "P"
            seen = data[pos : pos + len(H2_PREFACE)]
            if H2_PREFACE.startswith(seen):
                if len(seen) < len(H2_PREFACE):
                    return Wait.NEED_DATA
                self._state = _CLOSED
                self._consume(size)
                return SwitchToH2(data=data[pos:])
        # a head dribbling in is not rescanned from its start on every read
        scanned = self._scanned
        end = data.find(b"\r\n\r\n", pos + scanned - 3 if scanned > 3 else pos)
        if self._eol >= 0:
            eol = pos + self._eol
        else:
            eol = data.find(b"\r\n", pos + scanned - 1 if scanned > 1 else pos)
            if eol >= 0:
                self._eol = eol - pos
        if end < 0:
            self._scanned = size - pos
            if eol < 0:
                if size - pos > self._max_request_line:
                    raise _Reject(414, "request line too long")
            elif eol - pos > self._max_request_line:
                raise _Reject(414, "request line too long")
            elif size - eol - 2 > self._max_header_bytes:
                raise _Reject(431, "request header fields too large")
            if data.find(b"\n\n", pos + scanned - 1 if scanned > 1 else pos) >= 0:
                raise _Reject(400, "bare LF line ending")
            return Wait.NEED_DATA
        if eol - pos > self._max_request_line:
            raise _Reject(414, "request line too long")
        if end - eol > self._max_header_bytes:
            raise _Reject(431, "request header fields too large")
        head_end = end + 4
        # CR and LF may only come as CRLF pairs (none is left once the pairs are taken out);
        # obsolete line folding is refused (RFC 9112 §5.2)
        unpaired = data[pos:head_end].replace(b"\r\n", _NOTHING)
        if 13 in unpaired or 10 in unpaired:
            raise _Reject(400, "bare CR or LF in request head")
        if _FOLDED.search(data, pos, head_end) is not None:
            raise _Reject(400, "obsolete line folding")
        match = _REQUEST_LINE.fullmatch(data, pos, eol)
        if match is None:
            raise _Reject(400, "malformed request line")
        method, target, major, minor = match.groups()
        if major != b"1" or minor not in (b"0", b"1"):
            raise _Reject(505, "HTTP version not supported")
        if method not in _METHODS or method == b"CONNECT":
            raise _Reject(501, "method not implemented")
        if target[0] != 0x2F and not (  # origin-form, or absolute-form, or OPTIONS *
            (target == b"*" and method == b"OPTIONS")
            or target[:7].lower() == b"http://"
            or target[:8].lower() == b"https://"
        ):
            raise _Reject(400, "malformed request target")
        headers = self._backend.parse_head(data, pos, head_end)
        self._consume(head_end)
        # a head refused from here on is known whole: its answer can honour Accept
        self._parsed = (method, target, headers)
        event = self._start_request(method, target, minor == b"1", headers)
        self._parsed = None
        return event

    def _start_request(
        self, method: bytes, target: bytes, http11: bool, headers: Headers
    ) -> H1Event:
        host: bytes | None = None
        hosts = 0
        length_value: bytes | None = None
        coding: bytes | None = None
        codings = 0
        connection = b""
        expect: bytes | None = None
        upgrade: bytes | None = None
        settings: bytes | None = None
        settings_count = 0
        for name, value in headers:
            if name in _FRAMING_NAMES:
                if name == b"host":
                    hosts += 1
                    host = value
                elif name == b"content-length":
                    if length_value is not None:
                        raise _Reject(400, "repeated Content-Length")
                    length_value = value
                elif name == b"transfer-encoding":
                    codings += 1
                    coding = value
                elif name == b"connection":
                    connection = connection + b"," + value if connection else value
                elif name == b"expect":
                    expect = value
                elif name == b"upgrade":
                    upgrade = value
                else:
                    settings_count += 1
                    settings = value
        # checked in h11's order, so both parsers answer a request with several faults alike
        if coding is not None and (codings > 1 or coding.strip(b" \t").lower() != b"chunked"):
            raise _Reject(501, "unsupported Transfer-Encoding")
        if hosts > 1 or (http11 and hosts == 0):
            raise _Reject(400, "missing or repeated Host")
        if host is not None and not valid_host(host):
            raise _Reject(400, "invalid Host")  # RFC 9112 §3.2; it would become SERVER_NAME
        self.requests += 1
        content_length: int | None = None
        chunked = False
        if coding is not None:
            if length_value is not None:
                raise _Reject(400, "both Content-Length and Transfer-Encoding")
            chunked = True
            if coding != coding.lower():  # h11 lower-cases this value; present the same headers
                headers = [
                    (n, v.lower() if n == b"transfer-encoding" else v) for n, v in headers
                ]
        elif length_value is not None:
            digits = length_value.strip(b" \t")
            if not digits.isdigit():
                raise _Reject(400, "invalid Content-Length")
            content_length = int(digits)
            if content_length >= 1 << 64:
                raise _Reject(400, "invalid Content-Length")
            if content_length > self._max_body_bytes:
                raise _Reject(413, "request body larger than the limit")
        keep_alive = http11
        if connection:
            tokens = _tokens(connection)
            if b"close" in tokens:
                keep_alive = False
            elif not http11 and b"keep-alive" in tokens:
                keep_alive = True
        else:
            tokens = set()
        has_body = chunked or bool(content_length)
        request = Request(
            1, method, target, headers, "1.1" if http11 else "1.0", host or b"",
            self._scheme, content_length, has_body,
        )
        if (
            upgrade is not None
            and self._allow_h2
            and http11
            and not has_body
            and settings_count == 1
            and b"h2c" in _tokens(upgrade)
            and b"upgrade" in tokens
            and b"http2-settings" in tokens
        ):
            assert settings is not None
            self._state = _CLOSED
            rest = self._data[self._pos :]
            self._consume(len(self._data))
            return SwitchToH2(data=rest, reply=_SWITCHING, request=request, settings=settings)
        self._keep_alive = keep_alive and not self._draining
        self._http10 = not http11
        self._head = method == b"HEAD"
        self._expect_continue = (
            http11 and expect is not None and expect.strip(b" \t").lower() == b"100-continue"
        )
        if chunked:
            self._state = _BODY_CHUNKED
            self._decoder = self._backend.chunk_decoder(self._max_body_bytes)
        else:
            self._state = _BODY_LENGTH
            self._remaining = content_length or 0
        return request

    def _next_length_body(self) -> H1Event:
        remaining = self._remaining
        if remaining == 0:
            self._state = _DONE
            return _END_BODY
        data = self._data
        pos = self._pos
        avail = len(data) - pos
        if avail <= 0:
            return Wait.NEED_DATA
        take = min(avail, remaining, MAX_BODY_EVENT)
        if pos == 0 and take == len(data):
            chunk = data
            self._data = b""
        else:
            chunk = data[pos : pos + take]
            self._consume(pos + take)
        self._remaining = remaining - take
        return Body(1, chunk)

    def _next_chunked_body(self) -> H1Event:
        decoder = self._decoder
        assert decoder is not None
        data = self._data
        pos = self._pos
        pieces, new_pos, done = decoder.decode(data, pos, min(len(data), pos + MAX_BODY_EVENT))
        self._consume(new_pos)
        if done:
            self._state = _BODY_LENGTH
            self._remaining = 0
        if not pieces:
            return self._next_length_body() if done else Wait.NEED_DATA
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._body_seen += len(chunk)
        if self._body_seen > self._max_body_bytes:
            raise _Reject(413, "request body larger than the limit")
        return Body(1, chunk)

    def _reject(self, status: int, reason: str) -> ProtocolError:
        parsed = self._parsed
        self._parsed = None
        known = self._sketch() if parsed is None else Request(1, *parsed, "1.1", has_body=False)
        self.refuse()
        return ProtocolError(status, reason, request=known)

    def _sketch(self) -> Request:
        """A head that did not parse: at least its Accept field, found leniently."""
        end = min(len(self._data), self._pos + self._max_request_line + self._max_header_bytes)
        match = _ACCEPT_LINE.search(self._data, self._pos, end)
        headers = [(b"accept", match.group(1))] if match else []
        return Request(1, b"", b"", headers, "1.1", has_body=False)

    def refuse_slow_head(self) -> Request:
        """The head did not arrive in time: parse nothing more; what is known of it."""
        known = self._sketch()
        self.refuse()
        return known

    def refuse(self) -> None:
        """Parse nothing more: the error answer (sent like any response) closes the connection."""
        self._state = _CLOSED
        self._keep_alive = False

    # -- output ----------------------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        return self._response_started

    @property
    def response_done(self) -> bool:
        return self._response_done

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive

    def shutdown(self) -> None:
        """Drain: the current response (or the next, if none is running) closes the connection."""
        self._draining = True
        if not self._response_started:
            self._keep_alive = False

    def close_after_response(self) -> None:
        """The response about to start ends the connection (`connection: close`)."""
        self._keep_alive = False

    def continue_response(self) -> bytes:
        """The interim 100 Continue, once, if the client asked for it and nothing was sent yet."""
        if self._expect_continue and not self._response_started:
            self._expect_continue = False
            return _CONTINUE
        return b""

    def send_interim(self, status: int, headers: Headers) -> bytes:
        """An interim 1xx response (103 Early Hints) ahead of the final one; nothing for an
        HTTP/1.0 client, which cannot receive one (RFC 9110 §15.2), or once it started."""
        if self._http10 or self._response_started or not 102 <= status < 200:
            return b""
        parts = [_STATUS_LINES[status]]
        for name, value in headers:
            if name not in _HOP_BY_HOP:
                check_header(name, value)
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def send_response(self, status: int, headers: Headers) -> bytes:
        if self._response_started:
            raise RuntimeError("response already started")
        if status < 200 or status > 599:
            raise ValueError(f"invalid final status {status}")
        parts = [_STATUS_LINES[status], self._defaults.h1]
        length: bytes | None = None
        close = not self._keep_alive
        for name, value in headers:
            if name in _HOP_BY_HOP:
                if name == b"content-length":
                    length = value
                elif name == b"connection" and b"close" in _tokens(value):
                    close = True
                continue  # framing and connection management are ours
            check_header(name, value)
            parts += (name, b": ", value, b"\r\n")
        # started only once every header passed: a refused one leaves room for a 500
        self._response_started = True
        self._expect_continue = False
        if self._head or status == 304 or status == 204:
            self._mode = _NO_BODY
            if length is not None and status != 204:
                parts += (b"content-length: ", length, b"\r\n")
        elif length is not None:
            if not length.isdigit():
                raise ValueError(f"invalid content-length {length!r}")
            self._mode = _LENGTH
            self._send_remaining = int(length)
            parts += (b"content-length: ", length, b"\r\n")
        elif not self._http10:
            self._mode = _CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            self._mode = _UNTIL_CLOSE
            close = True
        if close:
            self._keep_alive = False
            parts.append(b"connection: close\r\n\r\n")
        elif self._http10:
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    def send_data(self, data: bytes) -> bytes:
        mode = self._mode
        if not self._response_started or self._response_done:
            raise RuntimeError("send_data outside a response")
        if mode == _CHUNKED:
            if not data:
                return b""
            return b"%x\r\n%b\r\n" % (len(data), data)
        if mode == _LENGTH:
            if len(data) > self._send_remaining:
                raise RuntimeError("response body longer than its content-length")
            self._send_remaining -= len(data)
            return data
        if mode == _UNTIL_CLOSE:
            return data
        return b""  # HEAD, 204, 304: no body on the wire

    def send_end(self) -> bytes:
        if not self._response_started or self._response_done:
            raise RuntimeError("send_end outside a response")
        self._response_done = True
        if self._mode == _CHUNKED:
            return b"0\r\n\r\n"
        if self._mode == _LENGTH and self._send_remaining:
            self._keep_alive = False
            raise RuntimeError("response body shorter than its content-length")
        return b""

    def start_next_cycle(self) -> bool:
        """After a finished response: True if the connection may carry another request."""
        if not self._response_done:
            raise RuntimeError("the response is not finished")
        if self._keep_alive and self._state in (_BODY_LENGTH, _BODY_CHUNKED):
            self._discard_buffered_body()
        if not self._keep_alive or self._draining or self._state != _DONE:
            self._state = _CLOSED
            return False
        self._state = _HEAD
        self._reset_request()
        return True

    def _discard_buffered_body(self) -> None:
        # drop the unread body if it is already here; otherwise the caller closes
        while self._state in (_BODY_LENGTH, _BODY_CHUNKED):
            try:
                event = (
                    self._next_length_body()
                    if self._state == _BODY_LENGTH
                    else self._next_chunked_body()
                )
            except _Reject:
                self._state = _CLOSED
                return
            if event is Wait.NEED_DATA:
                return
