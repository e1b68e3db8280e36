"""A small App for the transport tests and a TCPServer running on its own thread and loop,
so blocking real clients (curl, h2load, httpx, raw sockets) can talk to it from the test."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs

import uvloop

from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond_status
from gateway.server.settings import ServerSettings
from gateway.server.tcp import TCPServer

T = TypeVar("T")
PIECE = 65536


class TransportApp:
    """Routes by path; records progress and cancellations for the backpressure tests."""

    def __init__(self) -> None:
        self.progress: dict[str, int] = {}  # /big?tag=...: bytes handed to send_data so far
        self.cancelled: set[str] = set()  # tags whose task was cancelled
        self.finished: set[str] = set()

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.error_status is not None:  # an answer the server makes itself
            await respond_status(ctx, ctx.error_status)
            return
        path, _, query = ctx.request.target.partition(b"?")
        params = {k: v[0] for k, v in parse_qs(query.decode("latin-1")).items()}
        route = path.decode("latin-1")
        if route == "/hello":
            await send(ctx, 200, b"hello\n")
        elif route == "/echo":
            body = bytearray()
            while (chunk := await ctx.receive()) is not None:
                body += chunk
            await send(ctx, 200, bytes(body), b"application/octet-stream")
        elif route == "/echo-stream":  # no content-length: chunked on HTTP/1.1
            await ctx.send_response(200, [(b"content-type", b"application/octet-stream")])
            while (chunk := await ctx.receive()) is not None:
                await ctx.send_data(chunk)
            await ctx.end()
        elif route == "/stream":
            await ctx.send_response(200, [(b"content-type", b"text/plain")])
            for i in range(int(params.get("n", "3"))):
                await asyncio.sleep(float(params.get("delay", "0.05")))
                await ctx.send_data(b"chunk %d\n" % i)
            await ctx.end()
        elif route == "/big":
            await self._big(ctx, int(params["size"]), params.get("tag", "big"))
        elif route == "/slow":
            tag = params.get("tag", "slow")
            try:
                await asyncio.sleep(float(params.get("delay", "0.5")))
            except asyncio.CancelledError:
                self.cancelled.add(tag)
                raise
            self.finished.add(tag)
            await send(ctx, 200, b"slow done\n")
        elif route == "/info":
            req = ctx.request
            info = {
                "method": req.method.decode(), "target": req.target.decode("latin-1"),
                "http_version": req.http_version, "scheme": req.scheme, "tls": ctx.tls,
                "authority": req.authority.decode("latin-1"),
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in req.headers],
                "client": list(ctx.client), "server": list(ctx.server),
            }
            await send(ctx, 200, json.dumps(info).encode(), b"application/json")
        elif route == "/fail":
            raise RuntimeError("the app failed on purpose")
        else:
            await send(ctx, 404, b"not found\n")

    async def _big(self, ctx: RequestContext, size: int, tag: str) -> None:
        self.progress[tag] = 0
        try:
            await ctx.send_response(200, [(b"content-length", str(size).encode())])
            piece = b"x" * PIECE
            sent = 0
            while sent < size:
                data = piece[: size - sent]
                await ctx.send_data(data)
                sent += len(data)
                self.progress[tag] = sent
            await ctx.end()
            self.finished.add(tag)
        except asyncio.CancelledError:
            self.cancelled.add(tag)
            raise


async def send(ctx: RequestContext, status: int, body: bytes,
               content_type: bytes = b"text/plain") -> None:
    await ctx.send_response(
        status, [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    )
    await ctx.send_data(body)
    await ctx.end()


class ServerThread:
    """TCPServer on 127.0.0.1 (free port) in a background thread with its own uvloop."""

    def __init__(self, app: TransportApp, settings: ServerSettings,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.settings = settings
        self.ssl_context = ssl_context
        self.server = TCPServer(app, settings, ssl_context=ssl_context)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="transport-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start(host="127.0.0.1", port=0))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Start a coroutine on the server loop without waiting (a concurrent Future)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_running():
            self.run(self.server.drain(1.0))
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.port))
        return sock
