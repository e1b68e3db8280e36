"""A small HTTP/3 client on aioquic.asyncio.connect + H3Connection, modelled on aioquic's
examples/http3_client.py, for the end-to-end tests. It can stop granting flow-control
credit (pause_reading) to play a client that reads slowly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each chunk
    # interim (1xx) responses before the final one: status, headers, time.monotonic()
    interims: list[tuple[int, list[tuple[bytes, bytes]], float]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class _Pending:
    future: asyncio.Future[Response]
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    received: int = 0
    interims: list[tuple[int, list[tuple[bytes, bytes]], float]] = field(default_factory=list)


class StreamError(Exception):
    def __init__(self, stream_id: int, error_code: int) -> None:
        super().__init__(f"stream {stream_id} reset with 0x{error_code:x}")
        self.error_code = error_code


class _H3(H3Connection):
    """aioquic's client checks a response's content-length against its body even for HEAD,
    whose answer rightly carries the GET's length and no body (RFC 9110 §9.3.2)."""

    def __init__(self, quic: Any) -> None:
        super().__init__(quic)
        self.head_streams: set[int] = set()

    def _check_content_length(self, stream: Any) -> None:
        if stream.stream_id not in self.head_streams:
            super()._check_content_length(stream)


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = _H3(self._quic)
        self._pending: dict[int, _Pending] = {}
        self.terminated: ConnectionTerminated | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)
        if isinstance(event, StreamReset):
            pending = self._pending.pop(event.stream_id, None)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(StreamError(event.stream_id, event.error_code))
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(ConnectionError(event.reason_phrase))
            self._pending.clear()

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, (HeadersReceived, DataReceived)):
            return
        pending = self._pending.get(event.stream_id)
        if pending is None:
            return
        if isinstance(event, HeadersReceived):
            status = int(dict(event.headers).get(b":status", b"0"))
            if pending.status == 0 and 100 <= status < 200 and not event.stream_ended:
                pending.interims.append((status, list(event.headers), time.monotonic()))
                return
            if pending.status == 0:
                pending.headers = list(event.headers)
                pending.status = int(dict(event.headers)[b":status"])
        elif event.data:
            pending.chunks.append(event.data)
            pending.arrivals.append(time.monotonic())
            pending.received += len(event.data)
        if event.stream_ended:
            del self._pending[event.stream_id]
            pending.future.set_result(
                Response(pending.status, pending.headers, b"".join(pending.chunks),
                         pending.arrivals, pending.interims)
            )

    def start_request(
        self,
        method: str,
        path: str,
        *,
        authority: str = "127.0.0.1",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> tuple[int, asyncio.Future[Response]]:
        stream_id = self._quic.get_next_available_stream_id()
        fields = raw_headers if raw_headers is not None else [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *(headers or []),
        ]
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = _Pending(future)
        if method == "HEAD":
            self.h3.head_streams.add(stream_id)
        self.h3.send_headers(stream_id, fields, end_stream=body is None and end)
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return stream_id, future

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        _, future = self.start_request(method, path, **kwargs)
        return await future

    def received(self, stream_id: int) -> int:
        pending = self._pending.get(stream_id)
        return pending.received if pending is not None else -1

    def reset(self, stream_id: int, error_code: int) -> None:
        """Abandon a request: RESET_STREAM and STOP_SENDING, as a browser does."""
        pending = self._pending.pop(stream_id, None)
        if pending is not None and not pending.future.done():
            pending.future.cancel()
        self._quic.reset_stream(stream_id, error_code)
        self._quic.stop_stream(stream_id, error_code)
        self.transmit()

    def pause_reading(self) -> None:
        """Stop granting MAX_STREAM_DATA / MAX_DATA: the server must stop at our window."""
        quic: Any = self._quic
        quic._write_stream_limits = lambda *args, **kwargs: None
        quic._write_connection_limits = lambda *args, **kwargs: None

    def resume_reading(self) -> None:
        quic: Any = self._quic
        del quic._write_stream_limits
        del quic._write_connection_limits
        self.transmit()


def client_configuration(ca: str, **kwargs: Any) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, server_name="127.0.0.1", **kwargs
    )
    configuration.load_verify_locations(ca)
    return configuration


@contextlib.asynccontextmanager
async def h3_client(port: int, ca: str, **kwargs: Any) -> AsyncIterator[H3Client]:
    manager = connect(
        "127.0.0.1", port, configuration=client_configuration(ca, **kwargs),
        create_protocol=H3Client,
    )
    async with asyncio.timeout(10):  # aioquic would wait for the handshake until idle timeout
        client = await manager.__aenter__()
    try:
        assert isinstance(client, H3Client)
        yield client
    finally:
        await manager.__aexit__(None, None, None)
