"""HTTP/1.1 adapter, sans-IO: requests come from h11's client, responses are read back by it.

Every test runs against both request parsers through the `parser` fixture.
"""

from __future__ import annotations

import base64

import h2.config
import h2.connection
import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol.events import Body, EndBody, ProtocolError, Request
from gateway.protocol.http1 import PARSERS, H1Event, Http1Adapter, SwitchToH2, Wait
from gateway.protocol.response_headers import ResponseDefaults

DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"
Head = tuple[int, dict[bytes, bytes]]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(parser: str, **kwargs: object) -> Http1Adapter:
    defaults = ResponseDefaults(date=DATE)
    return Http1Adapter(parser=parser, defaults=defaults, **kwargs)  # type: ignore[arg-type]


def client_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | list[bytes] | None = None,
) -> bytes:
    """The bytes h11's client writes for this request."""
    client = h11.Connection(h11.CLIENT)
    hdrs = [("Host", "example.test"), *(headers or [])]
    out = client.send(h11.Request(method=method, target=target, headers=hdrs))
    assert out is not None
    pieces = [body] if isinstance(body, bytes) else (body or [])
    for piece in pieces:
        data = client.send(h11.Data(data=piece))
        assert data is not None
        out += data
    end = client.send(h11.EndOfMessage())
    assert end is not None
    return out + end


def client_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """Only the head h11's client writes (the body is never sent)."""
    client = h11.Connection(h11.CLIENT)
    hdrs = [("Host", "example.test"), *headers]
    out = client.send(h11.Request(method=method, target=target, headers=hdrs))
    assert out is not None
    return out


def drain_events(conn: Http1Adapter) -> list[H1Event]:
    events: list[H1Event] = []
    while True:
        event = conn.next_event()
        events.append(event)
        if isinstance(event, (Wait, ProtocolError, SwitchToH2)):
            return events


def read_response(raw: bytes, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    """Parse one response with h11's client; header names are lower-case."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    status = 0
    headers: dict[bytes, bytes] = {}
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, body
        elif event is h11.NEED_DATA:
            client.receive_data(b"")  # a close-delimited body ends here
        else:
            raise AssertionError(f"unexpected {event!r}")


def respond(
    conn: Http1Adapter, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> bytes:
    out = conn.send_response(status, headers or [])
    if body:
        out += conn.send_data(body)
    return out + conn.send_end()


# -- requests ----------------------------------------------------------------------------------


def test_simple_get(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request(headers=[("Accept", "*/*"), ("X-Two", "a"), ("x-two", "b")]))
    request, end, wait = drain_events(conn)
    assert isinstance(request, Request)
    assert request.method == b"GET"
    assert request.target == b"/"
    assert request.http_version == "1.1"
    assert request.authority == b"example.test"
    assert request.scheme == "http"
    assert request.headers == [
        (b"host", b"example.test"), (b"accept", b"*/*"), (b"x-two", b"a"), (b"x-two", b"b"),
    ]
    assert request.content_length is None
    assert request.has_body is False
    assert end == EndBody(1)
    assert wait is Wait.PAUSED


def test_exact_response_bytes(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    out = respond(conn, 200, headers, b"hello")
    assert out == (
        b"HTTP/1.1 200 OK\r\ndate: " + DATE + b"\r\nserver: php-gateway\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    )
    assert conn.start_next_cycle() is True


def test_interim_response_bytes(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    hint = [(b"link", b"</a.css>; rel=preload"), (b"content-length", b"9")]
    assert conn.send_interim(103, hint) == (
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
    with pytest.raises(ValueError):
        conn.send_interim(103, [(b"link", b"a\r\nx: y")])
    assert conn.send_interim(101, []) == b""  # 100 and 101 belong to the connection
    respond(conn, 200, [(b"content-length", b"2")], b"ok")
    assert conn.send_interim(103, hint) == b""  # after the response: never


def test_no_interim_response_for_http10(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    drain_events(conn)
    assert conn.send_interim(103, [(b"link", b"</a.css>")]) == b""


def test_chunked_response_when_no_length(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    out = conn.send_response(200, [(b"content-type", b"text/plain")])
    assert b"transfer-encoding: chunked\r\n" in out
    out += conn.send_data(b"hel") + conn.send_data(b"") + conn.send_data(b"lo") + conn.send_end()
    assert out.endswith(b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
    status, headers, body = read_response(out)
    assert (status, body) == (200, b"hello")
    assert headers[b"server"] == b"php-gateway"
    assert headers[b"date"] == DATE


def test_extra_and_refreshed_default_headers(parser: str) -> None:
    defaults = ResponseDefaults(date=DATE, extra=[(b"Alt-Svc", b'h3=":443"; ma=86400')])
    conn = Http1Adapter(parser=parser, defaults=defaults)
    conn.receive_data(client_request())
    drain_events(conn)
    defaults.set_date(b"Fri, 02 Jan 2026 00:00:00 GMT")
    _, headers, _ = read_response(respond(conn, 200, [(b"content-length", b"0")]))
    assert headers[b"alt-svc"] == b'h3=":443"; ma=86400'
    assert headers[b"date"] == b"Fri, 02 Jan 2026 00:00:00 GMT"


def test_content_length_body_in_pieces(parser: str) -> None:
    conn = make(parser)
    raw = client_request("POST", "/upload?x=1", [("Content-Length", "11")], b"hello world")
    head, body = raw[:-11], raw[-11:]
    conn.receive_data(head + body[:4])
    events = drain_events(conn)
    assert isinstance(events[0], Request)
    assert events[0].content_length == 11 and events[0].has_body
    assert events[0].target == b"/upload?x=1"
    assert events[1:] == [Body(1, b"hell"), Wait.NEED_DATA]
    conn.receive_data(body[4:])
    assert drain_events(conn) == [Body(1, b"o world"), EndBody(1), Wait.PAUSED]


def test_chunked_request_body(parser: str) -> None:
    conn = make(parser)
    raw = client_request(
        "POST", "/", [("Transfer-Encoding", "chunked")], [b"abc", b"defgh", b"i" * 70000]
    )
    events: list[H1Event] = []
    for i in range(0, len(raw), 7000):  # arrives in arbitrary slices
        conn.receive_data(raw[i : i + 7000])
        events += drain_events(conn)
    request = events[0]
    assert isinstance(request, Request)
    assert request.has_body and request.content_length is None
    body = b"".join(e.data for e in events if isinstance(e, Body))
    assert body == b"abcdefgh" + b"i" * 70000
    assert all(len(e.data) <= 65536 for e in events if isinstance(e, Body))
    assert events[-2:] == [EndBody(1), Wait.PAUSED]


def test_chunked_trailers_and_extensions_are_accepted(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    events = drain_events(conn)
    assert events[1:] == [Body(1, b"hello"), EndBody(1), Wait.PAUSED]


def test_keep_alive_sequence(parser: str) -> None:
    conn = make(parser)
    for i in range(3):
        conn.receive_data(client_request(target=f"/{i}"))
        request = drain_events(conn)[0]
        assert isinstance(request, Request) and request.target == f"/{i}".encode()
        out = respond(conn, 200, [(b"content-length", b"2")], b"ok")
        assert b"connection" not in out
        assert conn.start_next_cycle() is True
        assert conn.idle
    assert conn.next_event() is Wait.NEED_DATA


def test_pipelined_requests_are_answered_in_order(parser: str) -> None:
    conn = make(parser)
    second = client_request("POST", "/second", [("Content-Length", "3")], b"abc")
    conn.receive_data(client_request(target="/first") + second + client_request(target="/third"))
    events = drain_events(conn)
    assert isinstance(events[0], Request) and events[0].target == b"/first"
    assert events[1:] == [EndBody(1), Wait.PAUSED]
    # the second request, head and body, is untouched until the first is answered
    assert conn.buffered == len(second) + len(client_request(target="/third"))
    assert conn.next_event() is Wait.PAUSED
    respond(conn, 200, [(b"content-length", b"0")])
    assert conn.start_next_cycle()
    events = drain_events(conn)
    assert isinstance(events[0], Request) and events[0].target == b"/second"
    assert events[1:] == [Body(1, b"abc"), EndBody(1), Wait.PAUSED]
    respond(conn, 200, [(b"content-length", b"0")])
    assert conn.start_next_cycle()
    events = drain_events(conn)
    assert isinstance(events[0], Request) and events[0].target == b"/third"


def test_leading_empty_lines_are_ignored(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(b"\r\n\r\n" + client_request())
    assert isinstance(conn.next_event(), Request)


def test_head_request_arrives_byte_by_byte(parser: str) -> None:
    conn = make(parser)
    raw = client_request(headers=[("User-Agent", "slow")])
    for byte in raw[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is Wait.NEED_DATA
    conn.receive_data(raw[-1:])
    assert isinstance(conn.next_event(), Request)


def test_bare_lf_head_split_across_reads(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(b"GET / HTTP/1.1\nHost: a\n")
    assert conn.next_event() is Wait.NEED_DATA
    conn.receive_data(b"\n")
    assert_rejected(conn, drain_events(conn), 400)


# -- response framing ----------------------------------------------------------------------


def test_http10_without_length_is_close_delimited(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")  # h11's client only writes HTTP/1.1
    request = drain_events(conn)[0]
    assert isinstance(request, Request) and request.http_version == "1.0"
    out = conn.send_response(200, [])
    assert b"transfer-encoding" not in out
    assert out.endswith(b"connection: close\r\n\r\n")
    assert conn.send_data(b"body") == b"body"
    assert conn.send_end() == b""
    assert conn.start_next_cycle() is False


def test_http10_keep_alive_with_length(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    drain_events(conn)
    out = respond(conn, 200, [(b"content-length", b"2")], b"ok")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: keep-alive\r\n" in out
    assert conn.start_next_cycle() is True


def test_client_connection_close(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request(headers=[("Connection", "close")]))
    drain_events(conn)
    out = respond(conn, 200, [(b"content-length", b"0")])
    assert b"connection: close\r\n" in out
    assert conn.start_next_cycle() is False


def test_head_response_has_no_body(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request("HEAD"))
    drain_events(conn)
    out = conn.send_response(200, [(b"content-length", b"5")])
    assert conn.send_data(b"hello") == b""
    out += conn.send_end()
    assert out.endswith(b"content-length: 5\r\n\r\n")
    status, headers, body = read_response(out, "HEAD")
    assert (status, headers[b"content-length"], body) == (200, b"5", b"")
    assert conn.start_next_cycle() is True


def test_head_without_length_has_no_framing(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request("HEAD"))
    drain_events(conn)
    out = respond(conn, 200, [(b"content-type", b"text/html")], b"ignored")
    assert b"transfer-encoding" not in out and b"ignored" not in out
    assert conn.start_next_cycle() is True


@pytest.mark.parametrize(("status", "length_kept"), [(204, False), (304, True)])
def test_bodyless_statuses(parser: str, status: int, length_kept: bool) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    out = respond(conn, status, [(b"content-length", b"10")], b"not sent")
    assert (b"content-length: 10" in out) is length_kept
    assert b"not sent" not in out and b"transfer-encoding" not in out


def test_connection_managed_headers_from_app_are_replaced(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    out = conn.send_response(
        200,
        [(b"server", b"Apache"), (b"date", b"yesterday"), (b"transfer-encoding", b"gzip"),
         (b"connection", b"close"), (b"x-powered-by", b"PHP/8.4")],
    )
    assert out.count(b"server:") == 1 and b"Apache" not in out
    assert b"yesterday" not in out and b"gzip" not in out
    assert b"x-powered-by: PHP/8.4\r\n" in out
    assert b"connection: close\r\n" in out
    assert conn.keep_alive is False


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"x-evil", b"a\r\nset-cookie: pwned=1"), (b"x-nul", b"a\x00b"), (b"Upper", b"v"),
     (b"bad name", b"v")],
)
def test_response_header_injection_is_refused(parser: str, name: bytes, value: bytes) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    with pytest.raises(ValueError):
        conn.send_response(200, [(name, value)])


def test_body_longer_or_shorter_than_content_length(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    conn.send_response(200, [(b"content-length", b"4")])
    with pytest.raises(RuntimeError):
        conn.send_data(b"too long")
    conn.send_data(b"ab")
    with pytest.raises(RuntimeError):
        conn.send_end()
    assert conn.keep_alive is False


def test_expect_100_continue_once_and_only_before_response(parser: str) -> None:
    conn = make(parser)
    raw = client_request("POST", "/", [("Content-Length", "2"), ("Expect", "100-continue")], b"ok")
    conn.receive_data(raw[:-2])
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is Wait.NEED_DATA
    assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.continue_response() == b""
    conn.receive_data(b"ok")
    assert drain_events(conn) == [Body(1, b"ok"), EndBody(1), Wait.PAUSED]

    other = make(parser)
    other.receive_data(raw[:-2])
    drain_events(other)
    other.send_response(417, [(b"content-length", b"0")])
    assert other.continue_response() == b""


def test_expect_ignored_on_http10(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(
        b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    drain_events(conn)
    assert conn.continue_response() == b""


# -- limits and malformed input ----------------------------------------------------------------


def assert_rejected(conn: Http1Adapter, events: list[H1Event], status: int) -> None:
    error = events[-1]
    assert isinstance(error, ProtocolError), events
    assert error.status == status and error.close
    # the server answers through the pipeline like any response; the adapter closes after it
    answer = conn.send_response(status, [(b"content-length", b"2")]) + conn.send_data(b"no")
    got, headers, body = read_response(answer + conn.send_end())
    assert got == status
    assert headers[b"connection"] == b"close"
    assert body == b"no"
    assert conn.keep_alive is False
    assert conn.start_next_cycle() is False
    assert conn.next_event() is Wait.PAUSED


def test_request_line_too_long(parser: str) -> None:
    conn = make(parser, max_request_line=100)
    conn.receive_data(client_request(target="/" + "a" * 200))
    assert_rejected(conn, drain_events(conn), 414)


def test_request_line_too_long_before_it_ends(parser: str) -> None:
    conn = make(parser, max_request_line=100)
    conn.receive_data(b"GET /" + b"a" * 200)
    assert_rejected(conn, drain_events(conn), 414)


def test_header_block_too_large(parser: str) -> None:
    conn = make(parser, max_header_bytes=1024)
    conn.receive_data(client_request(headers=[("Cookie", "c" * 2000)]))
    assert_rejected(conn, drain_events(conn), 431)


def test_header_block_too_large_before_it_ends(parser: str) -> None:
    conn = make(parser, max_header_bytes=1024)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Filler: yyyyyyyyyy\r\n" * 60)
    assert_rejected(conn, drain_events(conn), 431)


def test_header_block_at_the_limit_is_fine(parser: str) -> None:
    conn = make(parser, max_header_bytes=1024)
    fields = b"Host: a\r\nX: " + b"v" * (1024 - len(b"Host: a\r\nX: \r\n")) + b"\r\n"
    assert len(fields) == 1024
    conn.receive_data(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert isinstance(conn.next_event(), Request)


def test_declared_body_over_limit_is_413_before_any_body_byte(parser: str) -> None:
    conn = make(parser, max_body_bytes=1000)
    conn.receive_data(client_head("POST", "/", [("Content-Length", "1001")]))
    assert_rejected(conn, drain_events(conn), 413)


def test_chunked_body_over_limit_is_413_when_crossed(parser: str) -> None:
    conn = make(parser, max_body_bytes=1000)
    raw = client_request("POST", "/", [("Transfer-Encoding", "chunked")], [b"a" * 600, b"b" * 600])
    split = raw.index(b"a" * 600) + 600 + 2  # after the first chunk
    conn.receive_data(raw[:split])
    events = drain_events(conn)
    assert isinstance(events[0], Request)
    assert events[1:] == [Body(1, b"a" * 600), Wait.NEED_DATA]
    conn.receive_data(raw[split:])
    assert_rejected(conn, drain_events(conn), 413)


CHUNKED_POST = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
MALFORMED: list[tuple[str, bytes, int]] = [
    ("content-length and transfer-encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("two different content-lengths",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("repeated content-length",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("content-length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("negative content-length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("content-length overflow",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    ("bad chunk size",
     CHUNKED_POST + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("negative chunk size",
     CHUNKED_POST + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size too long",
     CHUNKED_POST + b"f" * 21 + b"\r\n", 400),
    ("missing CRLF after chunk",
     CHUNKED_POST + b"5\r\nhelloXX0\r\n\r\n", 400),
    ("malformed trailer",
     CHUNKED_POST + b"0\r\nX y\r\n\r\n", 400),
    ("NUL in header value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("control byte in header value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    ("DEL in header value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("non-token header name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    ("non-ASCII in target", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("HTTP/0.9 request line", b"GET /\r\n\r\n", 400),
    ("relative target", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("unsupported transfer coding",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("chunked not last",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    ("unknown method", b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("lower-case method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("CONNECT", b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test\r\n\r\n", 501),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ("HTTP/2.0 after the first request", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
]


@pytest.mark.parametrize(
    ("raw", "status"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_requests(parser: str, raw: bytes, status: int) -> None:
    conn = make(parser, allow_h2=False)
    conn.receive_data(raw)
    assert_rejected(conn, drain_events(conn), status)


ACCEPTED: list[bytes] = [
    b"GET /a%20b?q=1&r=%zz#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://example.test/x?y HTTP/1.1\r\nHost: example.test\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a \r\nX:   spaced  out  \r\nEmpty:\r\nTab: a\tb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Latin1: caf\xe9\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"QUERY /search HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nq",
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_both_parsers_produce_identical_events(parser: str, raw: bytes) -> None:
    conn = make(parser)
    conn.receive_data(raw)
    events = drain_events(conn)
    reference = make("h11")
    reference.receive_data(raw)
    assert events == drain_events(reference)
    assert isinstance(events[0], Request)
    assert events[-2:] == [EndBody(1), Wait.PAUSED]


FUZZ_BASES = [
    b"GET /a?b=c HTTP/1.1\r\nHost: example\r\nAccept: */*\r\nX-A:  v \r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    CHUNKED_POST + b"5;x=y\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\nU: w\r\n x\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
]
FUZZ_BYTES = list(b" \t\r\n:;,=\x00\x01\x7f\x80\xffaZ09/?#%\"\\Ff")


@st.composite
def mutated_request(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    raw = bytearray(draw(st.sampled_from(FUZZ_BASES)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from(FUZZ_BYTES))
        if kind == "insert":
            raw.insert(at, byte)
        elif kind == "delete":
            del raw[at]
        else:
            raw[at] = byte
    cuts = draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=4, unique=True))
    return bytes(raw), sorted(cuts)


def summarise(parser: str, raw: bytes, cuts: list[int]) -> list[object]:
    """Events for `raw` fed in pieces, with adjacent Body events merged."""
    conn = make(parser, allow_h2=False, max_body_bytes=20, max_header_bytes=200,
                max_request_line=40)
    out: list[object] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        conn.receive_data(raw[start:cut])
        start = cut
        while not isinstance(event := conn.next_event(), Wait):
            if isinstance(event, Body) and out and isinstance(out[-1], Body):
                out[-1] = Body(1, out[-1].data + event.data)
            elif isinstance(event, ProtocolError):
                return [*out, event.status]  # the reason text is the parser's own
            else:
                out.append(event)
    return out


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_request())
def test_mutated_requests_get_the_same_answer_from_both_parsers(
    parser: str, case: tuple[bytes, list[int]]
) -> None:
    raw, cuts = case
    assert summarise(parser, raw, cuts) == summarise("h11", raw, cuts)


def test_header_values_are_trimmed(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(ACCEPTED[3])
    request = conn.next_event()
    assert isinstance(request, Request)
    assert request.headers == [
        (b"host", b"a"), (b"x", b"spaced  out"), (b"empty", b""), (b"tab", b"a\tb"),
    ]


def test_unread_body_already_buffered_keeps_the_connection(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request("POST", "/", [("Content-Length", "5")], b"hello")
                      + client_request(target="/next"))
    assert isinstance(conn.next_event(), Request)  # the app answers without reading the body
    respond(conn, 404, [(b"content-length", b"0")])
    assert conn.start_next_cycle() is True
    request = conn.next_event()
    assert isinstance(request, Request) and request.target == b"/next"


def test_unread_body_still_in_flight_closes(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_head("POST", "/", [("Content-Length", "5000")]))
    assert isinstance(conn.next_event(), Request)
    out = respond(conn, 413, [(b"content-length", b"0")])
    assert b"connection" not in out  # the head went out before we knew; closing is still right
    assert conn.start_next_cycle() is False


def test_drain_closes_after_current_response(parser: str) -> None:
    conn = make(parser)
    conn.receive_data(client_request())
    drain_events(conn)
    conn.shutdown()
    out = respond(conn, 200, [(b"content-length", b"0")])
    assert b"connection: close\r\n" in out
    assert conn.start_next_cycle() is False


# -- switching to HTTP/2 -----------------------------------------------------------------------


def h2_client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))


def test_prior_knowledge_preface(parser: str) -> None:
    client = h2_client()
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                            (":authority", "a")], end_stream=True)
    wire = client.data_to_send()
    conn = make(parser)
    conn.receive_data(wire[:10])
    assert conn.next_event() is Wait.NEED_DATA
    conn.receive_data(wire[10:])
    switch = conn.next_event()
    assert switch == SwitchToH2(data=wire)
    assert conn.next_event() is Wait.PAUSED


def test_prior_knowledge_only_on_a_cleartext_first_request(parser: str) -> None:
    conn = make(parser, allow_h2=False)
    conn.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert_rejected(conn, drain_events(conn), 505)


def test_h2c_upgrade(parser: str) -> None:
    settings = h2_client().initiate_upgrade_connection()
    assert settings is not None
    conn = make(parser)
    conn.receive_data(
        client_request(
            "GET", "/up",
            [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
             ("HTTP2-Settings", settings.decode())],
        )
        + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    )
    switch = conn.next_event()
    assert isinstance(switch, SwitchToH2)
    assert switch.reply == (
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
    )
    assert switch.settings == settings
    assert base64.urlsafe_b64decode(switch.settings)  # still the client's encoding
    assert switch.data == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert switch.request is not None and switch.request.target == b"/up"


def test_h2c_upgrade_ignored_with_a_body_or_over_tls(parser: str) -> None:
    headers = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
               ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]
    conn = make(parser)
    conn.receive_data(client_request("POST", "/", [*headers, ("Content-Length", "2")], b"hi"))
    assert isinstance(conn.next_event(), Request)
    tls = make(parser, allow_h2=False, scheme="https")
    tls.receive_data(client_request("GET", "/", headers))
    request = tls.next_event()
    assert isinstance(request, Request) and request.scheme == "https"


def test_unknown_parser_name() -> None:
    with pytest.raises(ValueError, match="unknown HTTP/1 parser"):
        Http1Adapter(parser="picohttp")
