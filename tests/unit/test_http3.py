"""HTTP/3 over QUIC without sockets: a real aioquic client (QuicConnection + H3Connection)
exchanges datagrams in memory with the server-side adapter (gateway/protocol/http3.py) and
with the UDP server and its request contexts (gateway/server/quic.py, h3_connection.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioquic._buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, ErrorCode, FrameType, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond_status
from gateway.protocol.events import Body, BodyTooLarge, EndBody, Request
from gateway.protocol.events import StreamReset as ResetEvent
from gateway.protocol.http3 import ConnectionClosed, H3AdapterEvent, Http3Adapter
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.quic import (
    QuicServer,
    QuicSettings,
    alt_svc_header,
    defaults_from,
    server_configuration,
)
from gateway.server.settings import ServerSettings
from gateway.server.state import ServerState

CLIENT_ADDR = ("10.0.0.2", 40000)
SERVER_ADDR = ("10.0.0.1", 443)
DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"
KIB = 1024


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("h3certs")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "ca.pem")}


# -- the client ----------------------------------------------------------------------------


@dataclass
class Reply:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    blocks: list[list[tuple[bytes, bytes]]] = field(default_factory=list)  # every HEADERS

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"]) if self.headers else 0

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class Client:
    """aioquic's client side, sans-IO, recording what the server sent per stream."""

    def __init__(self, ca: str, **config: Any) -> None:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name="127.0.0.1", **config
        )
        configuration.load_verify_locations(ca)
        self.quic = QuicConnection(configuration=configuration)
        self.h3 = H3Connection(self.quic)
        self.replies: dict[int, Reply] = {}
        self.control = b""  # the server's control stream (id 3), where GOAWAY travels
        self.terminated: ConnectionTerminated | None = None
        self.connected = False

    def receive(self, data: bytes, now: float) -> None:
        self.quic.receive_datagram(data, SERVER_ADDR, now)
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, StreamDataReceived) and event.stream_id == 3:
                self.control += event.data
            elif isinstance(event, StreamReset):
                self.replies.setdefault(event.stream_id, Reply()).reset = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
            elif type(event).__name__ == "HandshakeCompleted":
                self.connected = True
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    reply = self.replies.setdefault(h3_event.stream_id, Reply())
                    reply.headers = list(h3_event.headers)
                    reply.blocks.append(reply.headers)
                elif isinstance(h3_event, DataReceived):
                    self.replies.setdefault(h3_event.stream_id, Reply()).body += h3_event.data
                if isinstance(h3_event, (HeadersReceived, DataReceived)) and (
                    h3_event.stream_ended
                ):
                    self.replies[h3_event.stream_id].ended = True

    def request(
        self,
        method: bytes = b"GET",
        path: bytes = b"/",
        extra: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        end: bool = True,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        stream_id = self.quic.get_next_available_stream_id()
        fields = raw if raw is not None else [
            (b":method", method), (b":scheme", b"https"), (b":authority", b"example.test"),
            (b":path", path), *(extra or []),
        ]
        self.h3.send_headers(stream_id, fields, end_stream=end and body is None)
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=end)
        return stream_id

    def goaways(self) -> list[int]:
        buf = Buffer(data=self.control)
        ids = []
        try:
            buf.pull_uint_var()  # stream type: control
            while not buf.eof():
                frame_type = buf.pull_uint_var()
                payload = buf.pull_bytes(buf.pull_uint_var())
                if frame_type == FrameType.GOAWAY:
                    ids.append(Buffer(data=payload).pull_uint_var())
        except BufferReadError:
            pass
        return ids

    def pause_reading(self) -> None:
        """Stop granting flow-control credit, like a client whose reader is stuck."""
        quic: Any = self.quic
        quic._write_stream_limits = lambda *args, **kwargs: None
        quic._write_connection_limits = lambda *args, **kwargs: None

    def resume_reading(self) -> None:
        quic: Any = self.quic
        del quic._write_stream_limits, quic._write_connection_limits


# -- the sans-IO adapter on a virtual clock --------------------------------------------------


class AdapterPipe:
    def __init__(self, certs: dict[str, str], *, stream_window: int = 64 * KIB,
                 idle_timeout: float = 60.0, client: dict[str, Any] | None = None,
                 **adapter: Any) -> None:
        self.now = 1000.0
        self.config = QuicConfiguration(
            is_client=False, alpn_protocols=H3_ALPN, max_stream_data=stream_window,
            idle_timeout=idle_timeout,
        )
        self.config.load_cert_chain(certs["cert"], certs["key"])
        self.adapter_kwargs = {"max_header_list_size": 16 * KIB, **adapter}
        self.client = Client(certs["ca"], **(client or {}))
        self.server: Http3Adapter | None = None
        self.events: list[H3AdapterEvent] = []
        self.client.quic.connect(SERVER_ADDR, self.now)
        self.pump()
        assert self.client.connected

    @property
    def srv(self) -> Http3Adapter:
        assert self.server is not None
        return self.server

    def pump(self) -> None:
        for _ in range(20000):
            moved = False
            for data, _ in self.client.quic.datagrams_to_send(self.now):
                moved = True
                if self.server is None:
                    header = pull_quic_header(Buffer(data=data), 8)
                    self.server = Http3Adapter(
                        self.config, original_destination_connection_id=header.destination_cid,
                        defaults=ResponseDefaults(date=DATE), **self.adapter_kwargs,
                    )
                self.srv.receive_datagram(data, CLIENT_ADDR, self.now)
            self.events += self.srv.events()
            for data, _ in self.srv.datagrams_to_send(self.now):
                moved = True
                self.client.receive(data, self.now)
            self.events += self.srv.events()
            if moved:
                continue
            # pacing and ACK delay are part of a quiet exchange; loss timers are not
            timers = [t for t in (self.client.quic.get_timer(), self.srv.get_timer()) if t]
            if not timers or min(timers) > self.now + 0.2:
                return
            self.advance(max(0.0, min(timers) - self.now))
        raise AssertionError("the exchange did not settle")

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer, fire in ((self.client.quic.get_timer(), self.client.quic.handle_timer),
                            (self.srv.get_timer(), self.srv.handle_timer)):
            if timer is not None and timer <= self.now:
                fire(self.now)
        while (event := self.client.quic.next_event()) is not None:
            if isinstance(event, ConnectionTerminated):
                self.client.terminated = event
        self.events += self.srv.events()

    def take(self) -> list[H3AdapterEvent]:
        out, self.events = self.events, []
        return out


def of(kind: type, events: list[H3AdapterEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def body_of(events: list[H3AdapterEvent]) -> bytes:
    return b"".join(e.data for e in of(Body, events))


def test_get_becomes_request_and_response_goes_back(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    sid = pipe.client.request(path=b"/index.php?x=1", extra=[(b"accept", b"*/*")])
    pipe.pump()
    events = pipe.take()
    assert of(Request, events) == [Request(
        sid, b"GET", b"/index.php?x=1", [(b"accept", b"*/*")], "3", b"example.test", "https",
        None, False,
    )]
    assert of(EndBody, events) == [EndBody(sid)]
    pipe.srv.send_response(sid, 200, [(b"content-type", b"text/plain"), (b"connection", b"x"),
                                      (b"content-length", b"5")])
    pipe.srv.send_data(sid, b"hello")
    pipe.srv.end_stream(sid)
    pipe.srv.stream_finished(sid)
    pipe.pump()
    reply = pipe.client.replies[sid]
    assert reply.ended and reply.reset is None
    assert reply.headers == [(b":status", b"200"), (b"date", DATE), (b"server", b"php-gateway"),
                             (b"content-type", b"text/plain"), (b"content-length", b"5")]
    assert bytes(reply.body) == b"hello"


def test_interim_response_before_the_final_one(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    sid = pipe.client.request(path=b"/")
    pipe.pump()
    pipe.take()
    pipe.srv.send_interim(sid, 103, [(b"link", b"</a.css>; rel=preload")])
    pipe.srv.send_response(sid, 200, [(b"content-length", b"2")])
    pipe.srv.send_interim(sid, 103, [(b"link", b"</late.css>")])  # after the response: dropped
    pipe.srv.send_data(sid, b"ok")
    pipe.srv.end_stream(sid)
    pipe.srv.stream_finished(sid)
    pipe.pump()
    reply = pipe.client.replies[sid]
    assert reply.ended and reply.reset is None and bytes(reply.body) == b"ok"
    assert [block[0] for block in reply.blocks] == [(b":status", b"103"), (b":status", b"200")]
    assert reply.blocks[0] == [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]


def test_cookie_crumbs_are_joined(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    pipe.client.request(extra=[(b"cookie", b"a=1"), (b"x-y", b"z"), (b"cookie", b"b=2")])
    pipe.pump()
    (request,) = of(Request, pipe.take())
    assert request.headers == [(b"cookie", b"a=1; b=2"), (b"x-y", b"z")]


def test_post_body_credit_follows_what_the_app_consumed(certs: dict[str, str]) -> None:
    window = 64 * KIB
    pipe = AdapterPipe(certs, stream_window=window)
    upload = bytes(range(256)) * 1200  # 300 KiB, more than four windows
    sid = pipe.client.request(b"POST", b"/up", [(b"content-length", b"%d" % len(upload))],
                              body=upload)
    pipe.pump()
    events = pipe.take()
    (request,) = of(Request, events)
    assert request.content_length == len(upload) and request.has_body
    received = body_of(events)
    # nothing consumed yet: one window (minus the HEADERS frame) and no more, however long
    assert 0 < len(received) <= window
    for _ in range(3):
        pipe.advance(0.5)
        pipe.pump()
    assert body_of(pipe.take()) == b""
    assert pipe.client.quic._streams[sid].max_stream_data_remote <= window
    while not of(EndBody, events):
        pipe.srv.acknowledge(sid, len(body_of(events)))  # the app read what it was given
        pipe.pump()
        events = pipe.take()
        received += body_of(events)
    assert received == upload


def test_large_response_waits_for_the_peer_window(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs, client={"max_stream_data": 64 * KIB, "max_data": 1024 * KIB})
    sid = pipe.client.request(path=b"/big")
    pipe.pump()
    pipe.take()
    pipe.client.pause_reading()
    payload = hashlib.sha256(b"seed").digest() * (2 * 1024 * 1024 // 32)  # 2 MiB
    pipe.srv.send_response(sid, 200, [(b"content-length", b"%d" % len(payload))])
    pipe.srv.send_data(sid, payload)
    pipe.pump()
    # the peer's 64 KiB window let only that much out: the rest waits, counted as backlog
    assert len(pipe.client.replies[sid].body) <= 64 * KIB
    assert pipe.srv.send_backlog(sid) >= len(payload) - 64 * KIB
    pipe.client.resume_reading()
    pipe.srv.end_stream(sid)
    pipe.pump()
    reply = pipe.client.replies[sid]
    assert reply.status == 200 and reply.ended
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(payload).digest()
    assert pipe.srv.send_backlog(sid) == 0


def test_head_response_has_headers_only(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    # aioquic's client checks content-length against the body even for HEAD: skip that
    pipe.client.h3._check_content_length = lambda stream: None  # type: ignore[method-assign]
    sid = pipe.client.request(b"HEAD", b"/file")
    pipe.pump()
    pipe.srv.send_response(sid, 200, [(b"content-length", b"1234")])
    assert not pipe.srv.body_allowed(sid)
    pipe.srv.send_data(sid, b"x" * 1234)
    pipe.srv.end_stream(sid)
    pipe.pump()
    reply = pipe.client.replies[sid]
    assert reply.ended and reply.status == 200 and reply.body == b""
    assert reply.header(b"content-length") == b"1234"


def test_short_body_against_content_length_resets_the_stream(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    sid = pipe.client.request()
    pipe.pump()
    pipe.srv.send_response(sid, 200, [(b"content-length", b"10")])
    pipe.srv.send_data(sid, b"12345")
    with pytest.raises(RuntimeError, match="shorter"):
        pipe.srv.end_stream(sid)
    pipe.pump()
    assert pipe.client.replies[sid].reset == ErrorCode.H3_INTERNAL_ERROR
    longer = pipe.client.request()
    pipe.pump()
    pipe.srv.send_response(longer, 200, [(b"content-length", b"2")])
    with pytest.raises(RuntimeError, match="longer"):
        pipe.srv.send_data(longer, b"123")


def test_client_reset_becomes_stream_reset(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    sid = pipe.client.request(b"POST", b"/up", body=b"part of a body", end=False)
    pipe.pump()
    events = pipe.take()
    assert of(Request, events) and body_of(events) == b"part of a body"
    pipe.client.quic.reset_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
    pipe.client.quic.stop_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
    pipe.pump()
    assert of(ResetEvent, pipe.take()) == [ResetEvent(sid)]
    assert not pipe.srv.body_allowed(sid)
    pipe.srv.stream_finished(sid)
    pipe.pump()
    assert pipe.srv.active_streams == 0 and not pipe.srv.closed


def test_stop_sending_alone_ends_the_response(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    sid = pipe.client.request()
    pipe.pump()
    pipe.take()
    pipe.srv.send_response(sid, 200, [])
    pipe.client.quic.stop_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
    pipe.pump()
    assert of(ResetEvent, pipe.take()) == [ResetEvent(sid)]
    pipe.srv.send_data(sid, b"ignored")  # no error: the body is dropped
    assert not pipe.srv.body_allowed(sid)


def test_goaway_on_drain_then_close_when_idle(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    first = pipe.client.request()
    second = pipe.client.request()
    pipe.pump()
    assert [r.stream_id for r in of(Request, pipe.take())] == [first, second]
    pipe.srv.start_drain()
    pipe.pump()
    assert pipe.client.goaways() == [second + 4]
    late = pipe.client.request()  # sent after the GOAWAY: rejected, safe to retry
    pipe.pump()
    assert not of(Request, pipe.take())
    assert pipe.client.replies[late].reset == ErrorCode.H3_REQUEST_REJECTED
    for sid in (first, second):
        pipe.srv.send_response(sid, 204, [])
        pipe.srv.end_stream(sid)
    pipe.srv.stream_finished(first)
    pipe.pump()
    assert not pipe.srv.closed  # one request is still in flight
    pipe.srv.stream_finished(second)
    pipe.pump()
    assert pipe.srv.closed
    assert pipe.client.replies[second].status == 204 and pipe.client.replies[second].ended
    pipe.advance(5)
    assert pipe.client.terminated is not None
    assert pipe.client.terminated.error_code == ErrorCode.H3_NO_ERROR


def test_stream_cap_is_advertised_and_enforced(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs, max_concurrent_streams=3)
    assert pipe.client.quic._remote_max_streams_bidi == 3
    sids = [pipe.client.request() for _ in range(4)]
    pipe.pump()
    # the fourth stream waits for the peer's MAX_STREAMS, it never reaches the server
    assert [r.stream_id for r in of(Request, pipe.take())] == sids[:3]
    for sid in sids[:3]:
        pipe.srv.send_response(sid, 204, [])
        pipe.srv.end_stream(sid)
        pipe.srv.stream_finished(sid)
    pipe.pump()
    assert [r.stream_id for r in of(Request, pipe.take())] == [sids[3]]


def test_idle_timeout_closes_the_connection(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs, idle_timeout=5.0)
    pipe.take()
    pipe.advance(6)
    assert of(ConnectionClosed, pipe.take())
    assert pipe.srv.closed


PSEUDO = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.test"),
          (b":path", b"/")]


def _with(name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    """PSEUDO with one pseudo-header replaced, or left out when value is None."""
    if value is None:
        return [(n, v) for n, v in PSEUDO if n != name]
    return [(n, value if n == name else v) for n, v in PSEUDO]


@pytest.mark.parametrize(("fields", "status"), [
    (_with(b":scheme", None), 400),
    (_with(b":scheme", b"ftp"), 400),
    (_with(b":method", b"G(T"), 400),
    (_with(b":method", b"CONNECT"), 501),
    (_with(b":path", b"relative"), 400),
    (_with(b":path", b"/a b"), 400),
    (_with(b":path", b"*"), 400),
    ([*PSEUDO, (b":protocol", b"websocket")], 400),
    ([*PSEUDO, (b"host", b"other.test")], 400),
    ([*PSEUDO, (b"content-length", b"0"), (b"content-length", b"0")], 400),
    ([*PSEUDO, (b"content-length", b"999999999999")], 413),
    ([*PSEUDO, *[(b"x-h%d" % i, b"a" * 1000) for i in range(20)]], 431),  # decoded size
    ([*PSEUDO, (b"x-big", b"\xfe" * 20000)], 431),  # a HEADERS frame larger than the limit
], ids=["no-scheme", "ftp", "bad-method", "connect", "relative", "space", "star",
        "protocol", "host-mismatch", "two-lengths", "too-large", "headers-size", "headers-frame"])
def test_malformed_requests_are_answered_on_the_stream(
    certs: dict[str, str], fields: list[tuple[bytes, bytes]], status: int
) -> None:
    pipe = AdapterPipe(certs, max_body_bytes=1024 * KIB)
    # a body follows (FIN comes later), so aioquic's own content-length check stays quiet
    sid = pipe.client.request(raw=fields, end=False)
    pipe.pump()
    refused = of(Request, pipe.take())
    if refused:  # parsed far enough to be answered by the server's chain, as here
        assert [(r.stream_id, r.refused) for r in refused] == [(sid, status)]
        pipe.srv.send_response(sid, status, [(b"content-length", b"0")])
        pipe.srv.end_stream(sid)
        pipe.srv.stream_finished(sid)
        pipe.pump()
    reply = pipe.client.replies[sid]
    assert reply.status == status and reply.ended
    assert reply.header(b"server") == b"php-gateway"
    # the connection carries on
    ok = pipe.client.request()
    pipe.pump()
    assert [r.stream_id for r in of(Request, pipe.take())] == [ok]


def test_options_star_and_matching_host_are_fine(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs)
    pipe.client.request(raw=[(b":method", b"OPTIONS"), *_with(b":path", b"*")[1:],
                             (b"host", b"example.test")])
    pipe.pump()
    (request,) = of(Request, pipe.take())
    assert request.method == b"OPTIONS" and request.target == b"*"


@pytest.mark.parametrize("fields", [
    [*PSEUDO, (b"X-Upper", b"1")],
    _with(b":path", None),
    [*PSEUDO, (b"transfer-encoding", b"chunked")],
    [*PSEUDO, (b"content-length", b"5")],  # and the stream ends with no body
], ids=["upper-case", "no-path", "connection-specific", "length-mismatch"])
def test_what_aioquic_rejects_closes_the_connection(
    certs: dict[str, str], fields: list[tuple[bytes, bytes]]
) -> None:
    pipe = AdapterPipe(certs)
    pipe.client.request(raw=fields)
    pipe.pump()
    assert not of(Request, pipe.take())
    assert pipe.srv.closed
    pipe.advance(5)
    assert pipe.client.terminated is not None
    assert pipe.client.terminated.error_code == ErrorCode.H3_MESSAGE_ERROR


def test_body_over_the_limit_without_content_length(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs, max_body_bytes=10 * KIB)
    sid = pipe.client.request(b"POST", b"/up", body=b"x" * (20 * KIB))
    pipe.pump()
    events = pipe.take()
    assert of(Request, events) and of(BodyTooLarge, events) == [BodyTooLarge(sid)]
    pipe.srv.send_response(sid, 413, [(b"content-length", b"0")])
    pipe.srv.end_stream(sid)
    pipe.srv.stream_finished(sid)
    pipe.pump()
    assert pipe.client.replies[sid].status == 413


def test_rapid_resets_end_the_connection(certs: dict[str, str]) -> None:
    pipe = AdapterPipe(certs, rapid_reset_limit=5, max_concurrent_streams=10)
    for _ in range(5):
        sid = pipe.client.request(end=False)
        pipe.pump()
        pipe.client.quic.reset_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
        pipe.client.quic.stop_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
        pipe.pump()
        pipe.srv.stream_finished(sid)
    assert pipe.srv.closed
    pipe.advance(5)
    assert pipe.client.terminated is not None
    assert pipe.client.terminated.error_code == ErrorCode.H3_EXCESSIVE_LOAD


def test_header_limit_must_fit_in_the_stream_window(certs: dict[str, str]) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, max_stream_data=KIB)
    with pytest.raises(ValueError, match="window"):
        Http3Adapter(config, original_destination_connection_id=b"12345678",
                        max_header_list_size=64 * KIB)


def test_alt_svc_header() -> None:
    assert alt_svc_header(8443) == (b"alt-svc", b'h3=":8443"; ma=86400')


# -- the UDP server and its request contexts, on the real event loop -------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.closed = False

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def take(self) -> list[bytes]:
        out = [d for d, _ in self.sent]
        self.sent.clear()
        return out


class ServerPipe:
    def __init__(self, certs: dict[str, str], app: Callable[[RequestContext], Any], *,
                 settings: ServerSettings | None = None, quic: QuicSettings | None = None,
                 client: dict[str, Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        settings = settings or ServerSettings(h2_max_header_list_size=16 * KIB)
        quic = quic or QuicSettings(stream_window=64 * KIB, send_high_water=64 * KIB)
        self.state = ServerState(app, settings, defaults_from(settings), loop)
        self.server = QuicServer(
            self.state, server_configuration(certs["cert"], certs["key"], settings, quic),
            quic, SERVER_ADDR,
        )
        self.transport = FakeTransport()
        self.server.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = Client(certs["ca"], **(client or {}))
        self.sent_bytes = 0
        self.received_bytes = 0

    def to_server(self) -> int:
        datagrams = self.client.quic.datagrams_to_send(self.loop.time())
        for data, _ in datagrams:
            self.received_bytes += len(data)
            self.server.datagram_received(data, CLIENT_ADDR)
        return len(datagrams)

    def to_client(self) -> int:
        datagrams = self.transport.take()
        for data in datagrams:
            self.sent_bytes += len(data)
            self.client.receive(data, self.loop.time())
        return len(datagrams)

    async def pump_until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = self.loop.time() + timeout
        while True:
            moved = self.to_server()
            await asyncio.sleep(0)  # the server's transmit and the app tasks run here
            moved += self.to_client()
            if done():
                return
            timer = self.client.quic.get_timer()
            if timer is not None and timer <= self.loop.time():
                self.client.quic.handle_timer(self.loop.time())
            if self.loop.time() > deadline:
                raise TimeoutError("condition not reached")
            if not moved:
                await asyncio.sleep(0.002)

    async def connect(self) -> None:
        self.client.quic.connect(SERVER_ADDR, self.loop.time())
        await self.pump_until(lambda: self.client.connected)

    async def exchange(self, sid: int, timeout: float = 5.0) -> Reply:
        await self.pump_until(lambda: sid in self.client.replies and (
            self.client.replies[sid].ended or self.client.replies[sid].reset is not None
        ), timeout)
        return self.client.replies[sid]


async def echo_app(ctx: RequestContext) -> None:
    if ctx.error_status is not None:  # an answer the server makes itself
        await respond_status(ctx, ctx.error_status)
        return
    target = ctx.request.target
    if target == b"/fail":
        raise ValueError("app bug")
    if target == b"/bad-header":
        await ctx.send_response(200, [(b"x-split", b"a\r\nset-cookie: evil=1")])
    if target == b"/half":
        await ctx.send_response(200, [])
        await ctx.send_data(b"partial")
        return
    digest = hashlib.sha256()
    size = 0
    while (chunk := await ctx.receive()) is not None:
        digest.update(chunk)
        size += len(chunk)
    body = json.dumps({"size": size, "sha256": digest.hexdigest(),
                       "http": ctx.request.http_version, "tls": ctx.tls,
                       "client": list(ctx.client)}).encode()
    await ctx.send_response(200, [(b"content-type", b"application/json")])
    await ctx.send_data(body)
    await ctx.end()


async def test_server_runs_the_app_with_a_flow_controlled_body(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app)
    await pipe.connect()
    upload = hashlib.sha512(b"x").digest() * 8192  # 512 KiB, eight 64 KiB windows
    sid = pipe.client.request(b"POST", b"/echo", body=upload)
    reply = await pipe.exchange(sid)
    assert reply.status == 200
    assert reply.header(b"server") == b"php-gateway" and reply.header(b"date")
    assert json.loads(reply.body) == {"size": len(upload),
                                      "sha256": hashlib.sha256(upload).hexdigest(),
                                      "http": "3", "tls": True, "client": list(CLIENT_ADDR)}
    assert pipe.state.requests_served == 1 and pipe.state.active_requests == 0


async def test_app_failure_before_and_after_the_response_starts(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app)
    await pipe.connect()
    failed = await pipe.exchange(pipe.client.request(path=b"/fail"))
    assert failed.status == 500 and bytes(failed.body) == b"500 Internal Server Error\n"
    split = await pipe.exchange(pipe.client.request(path=b"/bad-header"))
    assert split.status == 500 and split.header(b"set-cookie") is None
    half = await pipe.exchange(pipe.client.request(path=b"/half"))
    assert half.reset == ErrorCode.H3_INTERNAL_ERROR and not half.ended  # truncation shows


async def test_body_timeout_answers_408(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app, settings=ServerSettings(
        h2_max_header_list_size=16 * KIB, body_timeout=0.2))
    await pipe.connect()
    sid = pipe.client.request(b"POST", b"/echo", body=b"first part", end=False)
    reply = await pipe.exchange(sid)
    assert reply.status == 408 and bytes(reply.body) == b"408 Request Timeout\n"
    assert pipe.state.active_requests == 0


async def test_send_timeout_gives_up_on_a_client_that_stopped_reading(
    certs: dict[str, str]
) -> None:
    contexts: list[RequestContext] = []

    async def endless(ctx: RequestContext) -> None:
        contexts.append(ctx)
        await ctx.send_response(200, [])
        while not ctx.disconnected.is_set():
            await ctx.send_data(b"z" * (64 * KIB))

    pipe = ServerPipe(certs, endless,
                      settings=ServerSettings(h2_max_header_list_size=16 * KIB, send_timeout=0.3),
                      client={"max_stream_data": 64 * KIB, "max_data": 1 << 20})
    await pipe.connect()
    pipe.client.pause_reading()
    sid = pipe.client.request()
    reply = await pipe.exchange(sid, timeout=5)
    assert reply.reset == ErrorCode.H3_REQUEST_CANCELLED
    assert contexts[0].disconnected.is_set()
    await asyncio.sleep(0)
    assert pipe.state.active_requests == 0


async def test_slow_reader_holds_the_producer_back(certs: dict[str, str]) -> None:
    produced = 0
    total = 4 * 1024 * KIB
    blocked = asyncio.Event()

    async def producer(ctx: RequestContext) -> None:
        nonlocal produced
        await ctx.send_response(200, [(b"content-length", b"%d" % total)])
        for i in range(total // (64 * KIB)):
            send = asyncio.ensure_future(ctx.send_data(bytes([i % 251]) * (64 * KIB)))
            await asyncio.sleep(0)
            if not send.done():
                blocked.set()
            await send
            produced += 64 * KIB
        await ctx.end()

    window = 64 * KIB
    pipe = ServerPipe(certs, producer, client={"max_stream_data": window, "max_data": 1 << 20})
    await pipe.connect()
    pipe.client.pause_reading()
    sid = pipe.client.request(path=b"/big")
    await pipe.pump_until(blocked.is_set)
    await asyncio.sleep(0.2)
    await pipe.pump_until(lambda: True)
    # bounded by the client's window + the server's high-water mark + one 64 KiB piece
    assert produced <= window + 64 * KIB + 64 * KIB
    assert len(pipe.client.replies[sid].body) <= window
    conn = next(iter(pipe.server._connections))
    assert conn.adapter.send_backlog(sid) <= 2 * 64 * KIB
    pipe.client.resume_reading()
    reply = await pipe.exchange(sid, timeout=30)
    assert reply.status == 200 and produced == total
    expected = b"".join(bytes([i % 251]) * (64 * KIB) for i in range(total // (64 * KIB)))
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(expected).digest()


async def test_a_datagram_burst_is_processed_without_a_queue(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app, quic=QuicSettings(stream_window=4096 * KIB,
                                                          connection_window=4096 * KIB))
    await pipe.connect()
    cc: Any = pipe.client.quic._loss
    cc._cc.congestion_window = 1 << 30  # let the client fire everything at once
    cc._pacer.next_send_time = lambda now: None
    upload = hashlib.sha256(b"burst").digest() * (1024 * KIB // 32)
    sid = pipe.client.request(b"POST", b"/echo", body=upload)
    before = pipe.server.datagrams_received
    burst = pipe.client.quic.datagrams_to_send(pipe.loop.time())
    assert len(burst) > 800  # ~1 MiB in one go
    for data, _ in burst:  # no await in between: the loop never runs during the burst
        pipe.server.datagram_received(data, CLIENT_ADDR)
    assert pipe.server.datagrams_received - before == len(burst)
    conn = next(iter(pipe.server._connections))
    assert conn.streams[sid]._buffered == len(upload)  # every byte is already in the context
    reply = await pipe.exchange(sid)
    assert json.loads(reply.body)["sha256"] == hashlib.sha256(upload).hexdigest()


async def test_drain_sends_goaway_and_finishes_requests(certs: dict[str, str]) -> None:
    release = asyncio.Event()

    async def waits(ctx: RequestContext) -> None:
        await release.wait()
        await ctx.send_response(200, [(b"content-length", b"4")])
        await ctx.send_data(b"done")
        await ctx.end()

    pipe = ServerPipe(certs, waits)
    await pipe.connect()
    sid = pipe.client.request()
    await pipe.pump_until(lambda: pipe.state.active_requests == 1)
    drain = asyncio.ensure_future(pipe.server.drain(timeout=5))
    await pipe.pump_until(lambda: pipe.client.goaways() == [sid + 4])
    assert not drain.done()
    release.set()
    reply = await pipe.exchange(sid)
    assert reply.status == 200 and bytes(reply.body) == b"done"
    await pipe.pump_until(drain.done, timeout=2)  # the ACK of the response lets it close
    assert pipe.transport.closed and pipe.server.connections == 0


async def test_drain_timeout_stops_the_apps(certs: dict[str, str]) -> None:
    contexts: list[RequestContext] = []

    async def stuck(ctx: RequestContext) -> None:
        contexts.append(ctx)
        await asyncio.sleep(60)

    pipe = ServerPipe(certs, stuck)
    await pipe.connect()
    pipe.client.request()
    await pipe.pump_until(lambda: bool(contexts))
    started = pipe.loop.time()
    await pipe.server.drain(timeout=0.3)
    assert 0.25 <= pipe.loop.time() - started < 2
    assert contexts[0].disconnected.is_set() and pipe.transport.closed
    await asyncio.sleep(0)  # the cancelled app task finishes
    assert pipe.state.active_requests == 0


async def test_retry_validates_the_address(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app, quic=QuicSettings(retry="on"))
    pipe.client.quic.connect(SERVER_ADDR, pipe.loop.time())
    pipe.to_server()
    first = pipe.transport.sent[0][0]
    assert pull_quic_header(Buffer(data=first), 8).packet_type == QuicPacketType.RETRY
    assert pipe.server.connections == 0  # no state kept before the address is proven
    await pipe.pump_until(lambda: pipe.client.connected)
    reply = await pipe.exchange(pipe.client.request(path=b"/echo"))
    assert reply.status == 200 and pipe.server.connections == 1


async def test_amplification_limit_before_validation(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app, quic=QuicSettings(retry="off"))
    pipe.client.quic.connect(SERVER_ADDR, pipe.loop.time())
    pipe.to_server()  # one Initial from the client, then silence
    for _ in range(5):
        await asyncio.sleep(0.05)
    sent = sum(len(d) for d, _ in pipe.transport.sent)
    assert 0 < sent <= 3 * pipe.received_bytes


async def test_a_tiny_initial_is_ignored(certs: dict[str, str]) -> None:
    pipe = ServerPipe(certs, echo_app)
    pipe.client.quic.connect(SERVER_ADDR, pipe.loop.time())
    (initial, _), *_ = pipe.client.quic.datagrams_to_send(pipe.loop.time())
    pipe.server.datagram_received(initial[:600], CLIENT_ADDR)
    pipe.server.datagram_received(b"\x00garbage", CLIENT_ADDR)
    await asyncio.sleep(0.01)
    assert pipe.transport.sent == [] and pipe.server.connections == 0



async def test_requests_reset_in_the_batch_that_opens_them_settle(certs: dict[str, str]) -> None:
    calls: list[bytes] = []

    async def app(ctx: RequestContext) -> None:
        calls.append(ctx.request.target)
        await echo_app(ctx)

    pipe = ServerPipe(certs, app)
    await pipe.connect()
    quic, now = pipe.client.quic, pipe.loop.time()
    sids = [pipe.client.request(path=b"/cancelled", end=False) for _ in range(5)]
    opening = quic.datagrams_to_send(now)
    for sid in sids:
        quic.reset_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
        quic.stop_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
    ok = pipe.client.request(path=b"/hello")
    # the requests and their resets reach the server before any app task can take a step
    for data, _ in [*opening, *quic.datagrams_to_send(now)]:
        pipe.server.datagram_received(data, CLIENT_ADDR)
    assert pipe.state.active_requests == 6
    reply = await pipe.exchange(ok)
    assert reply.status == 200
    await pipe.pump_until(lambda: pipe.state.active_requests == 0)
    assert calls == [b"/hello"]  # the reset ones never reached the app
    (conn,) = pipe.server._connections
    assert not conn.streams
