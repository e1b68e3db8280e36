"""The request lifecycle shared by every protocol (gateway/server/stream.py), driven through
the HTTP/1.1 and HTTP/2 connections on the real event loop with an in-memory transport, and
the middleware chain (gateway/pipeline/) with a fake context."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import structlog
from fake_context import FakeContext

from gateway.pipeline.access_log import access_log
from gateway.pipeline.chain import compose
from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond_status
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.dispatch import connection_factory
from gateway.server.h2_connection import H2Connection
from gateway.server.settings import HTTP2_IMPLS, ServerSettings
from gateway.server.state import ServerState

pytestmark = pytest.mark.asyncio


class MemoryTransport(asyncio.Transport):
    """What the connections use of an asyncio transport, writing into a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.out += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0  # every write is taken at once

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default)


class Recorder:
    """An app that answers 200 "ok" and notes every call; server-made answers go out as the
    endpoint sends them."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int | None]] = []

    async def __call__(self, ctx: RequestContext) -> None:
        self.calls.append((ctx.request.target, ctx.error_status))
        if ctx.error_status is not None:
            await respond_status(ctx, ctx.error_status)
            return
        if ctx.request.target == b"/fail":
            raise RuntimeError("app bug")
        body = b"ok\n"
        await ctx.send_response(200, [(b"content-length", b"%d" % len(body))])
        await ctx.send_data(body)
        await ctx.end()


def make_state(app: Any, **settings: Any) -> ServerState:
    return ServerState(app, ServerSettings(**settings), ResponseDefaults(),
                       asyncio.get_running_loop())


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    return client


def h1_with(state: ServerState, data: bytes) -> tuple[Any, MemoryTransport]:
    """A cleartext connection that has received `data`."""
    conn = connection_factory(state, tls=False)()
    transport = MemoryTransport()
    conn.connection_made(transport)
    conn.data_received(data)
    return conn, transport


GET = [(b":method", b"GET"), (b":path", b"/x"), (b":scheme", b"http"),
       (b":authority", b"example.test")]


# -- a request cancelled before its task runs settles everything -------------------------------


async def test_h1_request_and_disconnect_in_one_batch_settle() -> None:
    app = Recorder()
    state = make_state(app)
    conn, _transport = h1_with(state, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert state.active_requests == 1
    conn.connection_lost(None)  # before the app task took a step
    await settle()
    assert state.active_requests == 0 and not state.connections
    assert app.calls == []


@pytest.mark.parametrize("impl", HTTP2_IMPLS)
async def test_h2_request_and_reset_in_one_batch_settle(impl: str) -> None:
    app = Recorder()
    state = make_state(app, http2_impl=impl)
    conn = H2Connection(state, tls=False)
    transport = MemoryTransport()
    conn.connection_made(transport)
    client = h2_client()
    client.send_headers(1, GET, end_stream=True)
    client.reset_stream(1)
    client.send_headers(3, GET, end_stream=True)
    conn.data_received(client.data_to_send())  # HEADERS, RST_STREAM, HEADERS in one read
    assert state.active_requests == 2
    await settle()
    assert state.active_requests == 0 and state.requests_served == 1
    assert app.calls == [(b"/x", None)]  # only stream 3 reached the app
    events = client.receive_data(bytes(transport.out))
    ended = [e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)]
    assert ended == [3]
    conn.shutdown()  # no stream left: GOAWAY and close at once
    assert transport.closed


# -- the fallback answer and the chain ---------------------------------------------------------


async def test_h1_app_failure_is_a_500_through_the_chain() -> None:
    app = Recorder()
    state = make_state(app)
    _conn, transport = h1_with(state, b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert app.calls == [(b"/fail", None), (b"/fail", 500)]
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
    assert body == b"500 Internal Server Error\n"
    assert state.active_requests == 0 and state.requests_served == 1


async def test_h1_malformed_request_is_answered_through_the_chain() -> None:
    app = Recorder()
    state = make_state(app)
    _conn, transport = h1_with(state, b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert app.calls == [(b"", 400)]
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head
    assert body == b"400 Bad Request\n"
    assert transport.closed


async def test_head_body_is_dropped_once_for_every_protocol() -> None:
    state = make_state(Recorder())
    _conn, transport = h1_with(state, b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 3" in head
    assert body == b""


class Hinting:
    """An app that sends 103 Early Hints, then the response, then tries another hint."""

    async def __call__(self, ctx: RequestContext) -> None:
        await ctx.send_interim(103, [(b"link", b"</a.css>; rel=preload")])
        await ctx.send_response(200, [(b"content-length", b"2")])
        await ctx.send_interim(103, [(b"link", b"</late.css>; rel=preload")])  # dropped
        await ctx.send_data(b"ok")
        await ctx.end()


async def test_interim_response_precedes_the_head_on_http1() -> None:
    state = make_state(Hinting())
    _conn, transport = h1_with(state, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    out = bytes(transport.out)
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\nok") and b"late.css" not in out
    _conn, transport = h1_with(make_state(Hinting()), b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
    await settle()
    assert bytes(transport.out).startswith(b"HTTP/1.1 200 OK\r\n")  # 1.0 cannot take a 1xx


@pytest.mark.parametrize("impl", HTTP2_IMPLS)
async def test_interim_response_precedes_the_head_on_http2(impl: str) -> None:
    conn = H2Connection(make_state(Hinting(), http2_impl=impl), tls=False)
    transport = MemoryTransport()
    conn.connection_made(transport)
    client = h2_client()
    client.send_headers(1, GET, end_stream=True)
    conn.data_received(client.data_to_send())
    await settle()
    events = client.receive_data(bytes(transport.out))
    kinds = [type(e).__name__ for e in events if type(e).__name__ in (
        "InformationalResponseReceived", "ResponseReceived", "DataReceived", "StreamEnded")]
    assert kinds == ["InformationalResponseReceived", "ResponseReceived", "DataReceived",
                     "StreamEnded"]
    interim = next(e for e in events if isinstance(e, h2.events.InformationalResponseReceived))
    assert interim.headers == [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]


async def test_body_timeout_answers_408_and_closes() -> None:
    async def reader(ctx: RequestContext) -> None:
        if ctx.error_status is not None:
            await respond_status(ctx, ctx.error_status)
            return
        while await ctx.receive() is not None:
            pass
        await respond_status(ctx, 200)

    state = make_state(reader, body_timeout=0.05)
    _conn, transport = h1_with(
        state, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    await asyncio.sleep(0.2)
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head
    assert body == b"408 Request Timeout\n"
    assert transport.closed and state.active_requests == 0


async def test_access_log_records_status_and_bytes_of_every_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    structlog.configure(processors=[structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory())
    try:
        app = compose([access_log], Recorder())
        await app(FakeContext(target=b"/page"))
        await app(FakeContext(method=b"", target=b"", error_status=400))
        with pytest.raises(RuntimeError):
            await app(FakeContext(target=b"/fail"))  # the stream's 500 is logged when it goes
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(entry["uri"], entry["status"], entry["bytes_sent"]) for entry in lines] == [
        ("/page", 200, 3), ("", 400, len(b"400 Bad Request\n"))]
    assert lines[0]["client"] == "192.0.2.7"
