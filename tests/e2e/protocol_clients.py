"""One small client API over HTTP/1.1 (h11), HTTP/2 (h2) and HTTP/3 (aioquic), all over TLS
to one php-gateway port, so the cross-protocol suite runs each scenario unchanged on every
protocol. Each client records when every body chunk arrived, to tell streaming from
buffering, and can abandon a response half-way (HTTP/1: abort the connection; HTTP/2 and
HTTP/3: reset the stream)."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h11
from aioquic.h3.connection import ErrorCode
from h3_client import H3Client, h3_client

Fields = list[tuple[bytes, bytes]]


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each chunk
    # interim (1xx) responses before the final one: status, headers, time.monotonic()
    interims: list[tuple[int, Fields, float]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


class ProtocolClient(Protocol):
    name: str
    version: str  # as $_SERVER['SERVER_PROTOCOL'] names it

    async def request(self, method: str, path: str, headers: Fields | None = None,
                      body: bytes | None = None) -> Reply: ...

    async def abandon(self, path: str, after: int) -> int:
        """GET `path`, take at least `after` body bytes, then walk away; returns bytes read."""
        ...

    async def close(self) -> None: ...


def _tls(ca: str, alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols([alpn])
    return ctx


class H1Client:
    name, version = "h1", "HTTP/1.1"

    def __init__(self, port: int, ca: str) -> None:
        self.port, self.ca = port, ca
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection] | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=_tls(self.ca, "http/1.1"), server_hostname="127.0.0.1")
        return reader, writer, h11.Connection(h11.CLIENT)

    async def request(self, method: str, path: str, headers: Fields | None = None,
                      body: bytes | None = None) -> Reply:
        if self._conn is None or self._conn[2].our_state is not h11.IDLE:
            self._conn = await self._open()
        reader, writer, conn = self._conn
        fields = [(b"host", b"127.0.0.1"), *(headers or [])]
        if body is not None:
            fields.append((b"content-length", b"%d" % len(body)))
        writer.write(conn.send(h11.Request(method=method, target=path, headers=fields)))
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        reply = await self._read(reader, conn, method == "HEAD")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            writer.close()
            self._conn = None
        return reply

    async def _read(self, reader: asyncio.StreamReader, conn: h11.Connection, head: bool,
                    stop_after: int | None = None) -> Reply:
        reply = Reply(0, [], b"")
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                reply.interims.append((event.status_code,
                                       [(bytes(k), bytes(v)) for k, v in event.headers],
                                       time.monotonic()))
            elif isinstance(event, h11.Response):
                reply.status = event.status_code
                reply.headers = [(bytes(k), bytes(v)) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
                reply.arrivals.append(time.monotonic())
                if stop_after is not None and len(body) >= stop_after:
                    break
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        reply.body = bytes(body)
        return reply

    async def abandon(self, path: str, after: int) -> int:
        reader, writer, conn = await self._open()
        writer.write(conn.send(h11.Request(method="GET", target=path,
                                           headers=[(b"host", b"127.0.0.1")])))
        writer.write(conn.send(h11.EndOfMessage()))
        reply = await self._read(reader, conn, False, stop_after=after)
        writer.transport.abort()
        return len(reply.body)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()


class H2Client:
    name, version = "h2", "HTTP/2.0"

    def __init__(self, port: int, ca: str) -> None:
        self.port, self.ca = port, ca
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._replies: dict[int, Reply] = {}
        self._ended: set[int] = set()

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=_tls(self.ca, "h2"), server_hostname="127.0.0.1")
            self._h2.initiate_connection()
            self._writer.write(self._h2.data_to_send())
        return self._reader, self._writer

    def _start(self, method: str, path: str, headers: list[tuple[bytes, bytes]] | None,
               body: bytes | None) -> int:
        sid = self._h2.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", b"127.0.0.1"), (b":path", path.encode()), *(headers or [])]
        self._h2.send_headers(sid, fields, end_stream=body is None)
        self._replies[sid] = Reply(0, [], b"")
        return sid

    async def _send_body(self, sid: int, body: bytes) -> None:
        """As much as the server's windows allow, then wait for its WINDOW_UPDATEs."""
        view = memoryview(body)

        def window_open() -> bool:
            return self._h2.local_flow_control_window(sid) > 0 or sid in self._ended

        while view:
            window = min(self._h2.local_flow_control_window(sid),
                         self._h2.max_outbound_frame_size)
            if window <= 0:
                await self._pump(window_open)
                if sid in self._ended:
                    return
                continue
            self._h2.send_data(sid, bytes(view[:window]))
            view = view[window:]
        self._h2.end_stream(sid)

    async def _pump(self, done: Any) -> None:
        reader, writer = await self._ensure()
        writer.write(self._h2.data_to_send())
        while not done():
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            for event in self._h2.receive_data(data):
                self._event(event)
            writer.write(self._h2.data_to_send())

    def _event(self, event: Any) -> None:
        reply = self._replies.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.InformationalResponseReceived) and reply is not None:
            fields = [(bytes(k), bytes(v)) for k, v in event.headers]
            reply.interims.append((int(dict(fields)[b":status"]), fields, time.monotonic()))
        elif isinstance(event, h2.events.ResponseReceived) and reply is not None:
            reply.headers = [(bytes(k), bytes(v)) for k, v in event.headers]
            reply.status = int(dict(reply.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived) and reply is not None:
            reply.body += event.data
            reply.arrivals.append(time.monotonic())
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            self._ended.add(event.stream_id)

    async def request(self, method: str, path: str, headers: Fields | None = None,
                      body: bytes | None = None) -> Reply:
        await self._ensure()
        sid = self._start(method, path, headers, body)
        if body is not None:
            await self._send_body(sid, body)
        await self._pump(lambda: sid in self._ended)
        return self._replies.pop(sid)

    async def abandon(self, path: str, after: int) -> int:
        await self._ensure()
        sid = self._start("GET", path, None, None)
        await self._pump(lambda: len(self._replies[sid].body) >= after or sid in self._ended)
        self._h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        _, writer = await self._ensure()
        writer.write(self._h2.data_to_send())
        return len(self._replies.pop(sid).body)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class H3ProtocolClient:
    name, version = "h3", "HTTP/3.0"

    def __init__(self, port: int, ca: str) -> None:
        self.port, self.ca = port, ca
        self._manager: Any = None
        self._client: H3Client | None = None

    async def _ensure(self) -> H3Client:
        if self._client is None:
            self._manager = h3_client(self.port, self.ca)
            self._client = await self._manager.__aenter__()
        return self._client

    async def request(self, method: str, path: str, headers: Fields | None = None,
                      body: bytes | None = None) -> Reply:
        client = await self._ensure()
        response = await client.request(method, path, headers=headers, body=body)
        return Reply(response.status, response.headers, response.body, response.arrivals,
                     response.interims)

    async def abandon(self, path: str, after: int) -> int:
        client = await self._ensure()
        sid, future = client.start_request("GET", path)
        while client.received(sid) < after and not future.done():
            await asyncio.sleep(0.005)
        read = client.received(sid)
        client.reset(sid, ErrorCode.H3_REQUEST_CANCELLED)
        return read

    async def close(self) -> None:
        if self._manager is not None:
            await self._manager.__aexit__(None, None, None)


def make_client(name: str, port: int, ca: str) -> ProtocolClient:
    if name.startswith("h1"):
        return H1Client(port, ca)
    if name.startswith("h2"):  # "h2", or "h2-<implementation>" of the server
        return H2Client(port, ca)
    return H3ProtocolClient(port, ca)
