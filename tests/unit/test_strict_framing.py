"""Framing as strict as nginx (issue 9, point 6), sans-IO: chunk sizes are judged against
MAX_BODY_SIZE (413) and overflow (400) when their line arrives, before any byte of the
chunk; Host must be an RFC 3986 host[:port] (400 otherwise); SERVER_NAME comes from the
SERVER_NAME option, else from the Host only when valid. Both HTTP/1 parsers answer alike.
"""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config
from gateway.protocol.events import Body, EndBody, ProtocolError, Request
from gateway.protocol.http1 import MAX_CHUNK_SIZE, PARSERS, H1Event, Http1Adapter, Wait
from gateway.protocol.http2 import Http2Adapter
from gateway.protocol.http2_nghttp2 import Nghttp2Adapter
from gateway.protocol.request_fields import valid_host

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def events_for(parser: str, raw: bytes, **kwargs: int) -> list[H1Event]:
    conn = Http1Adapter(parser=parser, allow_h2=False, **kwargs)  # type: ignore[arg-type]
    conn.receive_data(raw)
    out: list[H1Event] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if isinstance(event, (Wait, ProtocolError)):
            return out


def rejected(events: list[H1Event]) -> int | None:
    last = events[-1]
    return last.status if isinstance(last, ProtocolError) else None


# ---------------------------------------------------------------- chunk sizes


def test_chunk_larger_than_the_limit_is_413_before_its_data(parser: str) -> None:
    # the size line alone: nothing of the chunk has arrived, and none needs to
    events = events_for(parser, CHUNKED_HEAD + b"3e9\r\n", max_body_bytes=1000)
    assert isinstance(events[0], Request)
    assert rejected(events) == 413


def test_chunks_adding_up_past_the_limit_are_413_at_the_second_size_line(parser: str) -> None:
    conn = Http1Adapter(parser=parser, max_body_bytes=1000)
    conn.receive_data(CHUNKED_HEAD + b"258\r\n" + b"a" * 600 + b"\r\n")
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() == Body(1, b"a" * 600)
    assert conn.next_event() is Wait.NEED_DATA
    conn.receive_data(b"191\r\n")  # 600 + 401 > 1000, and not a byte of it sent
    event = conn.next_event()
    assert isinstance(event, ProtocolError) and event.status == 413


def test_twenty_hex_digit_chunk_size_is_400(parser: str) -> None:
    events = events_for(parser, CHUNKED_HEAD + b"F" * 20 + b"\r\n")
    assert rejected(events) == 400


@pytest.mark.parametrize(("size", "status"), [
    (MAX_CHUNK_SIZE + 1, 400),  # beyond a signed 64-bit offset, as nginx counts
    (MAX_CHUNK_SIZE, 413),  # representable, but larger than any limit
])
def test_chunk_size_overflow_is_400_even_without_a_limit(parser: str, size: int,
                                                          status: int) -> None:
    raw = CHUNKED_HEAD + b"%X\r\n" % size
    assert rejected(events_for(parser, raw, max_body_bytes=1 << 62)) == status


def test_sizes_overflowing_together_are_400(parser: str) -> None:
    half = (MAX_CHUNK_SIZE + 1) // 2
    raw = CHUNKED_HEAD + b"1\r\nx\r\n%X\r\n" % half + b"y" * 4 + b"\r\n"
    events = events_for(parser, raw, max_body_bytes=1 << 62)
    assert rejected(events) == 413  # 1 + 2^62 passes the limit first
    raw = CHUNKED_HEAD + b"%X\r\n" % (MAX_CHUNK_SIZE - 1)
    assert rejected(events_for(parser, raw, max_body_bytes=MAX_CHUNK_SIZE)) is None


def test_body_of_exactly_the_limit_arrives_whole(parser: str) -> None:
    raw = CHUNKED_HEAD + b"1f4\r\n" + b"a" * 500 + b"\r\n1f4\r\n" + b"b" * 500 + b"\r\n0\r\n\r\n"
    events = events_for(parser, raw, max_body_bytes=1000)
    body = b"".join(e.data for e in events if isinstance(e, Body))
    assert body == b"a" * 500 + b"b" * 500
    assert events[-2:] == [EndBody(1), Wait.PAUSED]


def test_chunk_size_split_across_reads_is_still_judged(parser: str) -> None:
    conn = Http1Adapter(parser=parser, max_body_bytes=1000)
    conn.receive_data(CHUNKED_HEAD + b"10")
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is Wait.NEED_DATA
    conn.receive_data(b"00\r\n")  # 0x1000 = 4096
    event = conn.next_event()
    assert isinstance(event, ProtocolError) and event.status == 413


# ---------------------------------------------------------------- Host


BAD_HOSTS = [b"a b", b"a\tb", b"exa/mple", b"user@example.com", b"example.com:http",
             b"example.com:99999", b"a..b", b".example", b"[::1", b"[zz::1]", b"a:b:c", b":80",
             b"%zz", b"example.com\\", b'"quoted"', b"<x>", b""]
GOOD_HOSTS = [b"example.com", b"EXAMPLE.com:8080", b"127.0.0.1", b"127.0.0.1:80", b"[::1]",
              b"[::1]:8443", b"[v1.fe]", b"xn--bcher-kva.example", b"localhost.", b"a-b_c~d",
              b"ex%41mple", b"h:"]


@pytest.mark.parametrize("host", BAD_HOSTS, ids=repr)
def test_invalid_host_is_400(parser: str, host: bytes) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    assert rejected(events_for(parser, raw)) == 400


@pytest.mark.parametrize("host", GOOD_HOSTS, ids=repr)
def test_valid_host_is_accepted_alike_by_both_parsers(parser: str, host: bytes) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    events = events_for(parser, raw)
    assert events == events_for("h11", raw)
    assert isinstance(events[0], Request) and events[0].authority == host


def test_http10_without_host_is_still_accepted(parser: str) -> None:
    events = events_for(parser, b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], Request) and events[0].authority == b""


@pytest.mark.parametrize("host", BAD_HOSTS, ids=repr)
def test_valid_host_refuses_junk(host: bytes) -> None:
    assert not valid_host(host)


@pytest.mark.parametrize("host", GOOD_HOSTS, ids=repr)
def test_valid_host_takes_rfc3986_hosts(host: bytes) -> None:
    assert valid_host(host)


def test_valid_host_without_port() -> None:
    assert valid_host(b"example.com", port=False)
    assert not valid_host(b"example.com:80", port=False)
    assert not valid_host(b"h:", port=False)


# ---------------------------------------------------------------- SERVER_NAME option


def test_server_name_option(tmp_path: object) -> None:
    env = {"DOCUMENT_ROOT": "/"}
    assert load_config([], env).server_name is None
    assert load_config(["--server-name", "www.example.com"], env).server_name == "www.example.com"
    assert load_config([], {**env, "SERVER_NAME": "[::1]"}).server_name == "[::1]"


@pytest.mark.parametrize("bad", ["a b", "example.com:80", "exa/mple", "user@host"])
def test_server_name_option_refuses_what_is_not_a_host(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["--server-name", bad], {"DOCUMENT_ROOT": "/"})
    assert str(info.value).startswith("--server-name / SERVER_NAME: must be a host name")


# ---------------------------------------------------------------- HTTP/2 :authority


H2_ADAPTERS = {"nghttp2": Nghttp2Adapter, "h2": Http2Adapter}  # HTTP2_IMPL


@pytest.fixture(params=list(H2_ADAPTERS))
def h2_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def h2_request(impl: str, authority: bytes, host: bytes | None = None) -> Request:
    import h2.config
    import h2.connection

    server = H2_ADAPTERS[impl]()
    server.initiate()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    fields = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https")]
    if authority:
        fields.append((b":authority", authority))
    if host is not None:
        fields.append((b"host", host))
    client.send_headers(1, fields, end_stream=True)
    requests = [e for e in server.receive_data(client.data_to_send()) if isinstance(e, Request)]
    assert len(requests) == 1
    return requests[0]


@pytest.mark.parametrize("authority", BAD_HOSTS[:-1], ids=repr)  # empty: malformed, reset
def test_h2_invalid_authority_is_400(authority: bytes, h2_impl: str) -> None:
    assert h2_request(h2_impl, authority).refused == 400


def test_h2_invalid_host_without_authority_is_400(h2_impl: str) -> None:
    assert h2_request(h2_impl, b"", host=b"a b").refused == 400


@pytest.mark.parametrize("authority", GOOD_HOSTS, ids=repr)
def test_h2_valid_authority_is_accepted(authority: bytes, h2_impl: str) -> None:
    request = h2_request(h2_impl, authority)
    assert (request.refused, request.authority) == (0, authority)
