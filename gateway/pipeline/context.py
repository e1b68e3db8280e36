"""The contract between the connection layer (gateway/server/) and the pipeline.

For every request the server makes one `RequestStream` (gateway/server/stream.py), which
satisfies `RequestContext`, and awaits `app(ctx)`. The same pipeline therefore serves
HTTP/1.1, HTTP/2 and HTTP/3. The pipeline is a chain of middleware (`App -> App`) composed
in one place (gateway/pipeline/chain.py); a middleware that observes or rewrites the
response wraps the context in a `ContextProxy` and overrides what it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.protocol.events import Headers, Request


class RequestContext(Protocol):
    request: Request
    client: tuple[str, int]  # peer address and port (a trusted proxy's client, once resolved)
    server: tuple[str, int]  # local address and port the request arrived on
    tls: bool  # the request came over TLS (or a trusted proxy says its client used https)
    @property
    def bytes_received(self) -> int:
        """Request body bytes the app has taken (metrics' request size)."""
        ...

    @property
    def bytes_sent(self) -> int:
        """Response body bytes the connection took: what left, after every stage's
        transformation (the access log's and metrics' count)."""
        ...

    @property
    def disconnected(self) -> asyncio.Event:
        """Set when the peer is gone (reset stream, closed socket): stop work, send nothing."""
        ...

    # set when the server answers the request itself (a request it could not parse, the
    # fallback 500 after the app failed, a timeout): the chain runs, the router does not
    error_status: int | None

    def receive(self) -> Awaitable[bytes | None]:
        """Next request-body chunk; None once the body is complete.

        Reading is flow-controlled: while the pipeline does not call receive(), the
        connection stops reading the socket (HTTP/1) or granting window (HTTP/2, HTTP/3).
        """
        ...

    def take_complete_body(self) -> bytes | None:
        """The whole request body if it has all arrived already, else None (use receive())."""
        ...

    def send_interim(self, status: int, headers: Headers) -> Awaitable[None]:
        """Send an interim (1xx, e.g. 103 Early Hints) response before send_response();
        dropped where the protocol cannot carry it (HTTP/1.0) or once the response started."""
        ...

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        """Start the response. Headers are lower-case names; the connection layer adds
        date, server, alt-svc and framing headers (content-length / chunked) itself."""
        ...

    def send_data(self, data: bytes, flush: bool = True) -> Awaitable[None]:
        """Send body bytes; returns once the transport can take more (backpressure).
        flush=False: more output follows soon (PHP's output_buffering spilled, it did not
        flush()), so a stage that transforms the body (an encoder) may hold it for now."""
        ...

    def end(self) -> Awaitable[None]:
        """Finish the response (final chunk, END_STREAM)."""
        ...


App = Callable[[RequestContext], Awaitable[None]]
Middleware = Callable[[App], App]


class ContextProxy:
    """A RequestContext around another that forwards everything. Middleware subclass it to
    see or rewrite the response (override send_response / send_data / end) or to change what
    later stages see of the request (assign request, client, tls)."""

    __slots__ = ("client", "error_status", "inner", "request", "server", "tls")

    def __init__(self, inner: RequestContext) -> None:
        self.inner = inner
        self.request = inner.request
        self.client = inner.client
        self.server = inner.server
        self.tls = inner.tls
        self.error_status = inner.error_status

    @property
    def disconnected(self) -> asyncio.Event:
        return self.inner.disconnected  # asked for rarely: the stream makes it on demand

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    def receive(self) -> Awaitable[bytes | None]:
        return self.inner.receive()

    def take_complete_body(self) -> bytes | None:
        return self.inner.take_complete_body()

    def send_interim(self, status: int, headers: Headers) -> Awaitable[None]:
        return self.inner.send_interim(status, headers)

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        return self.inner.send_response(status, headers)

    def send_data(self, data: bytes, flush: bool = True) -> Awaitable[None]:
        return self.inner.send_data(data, flush)

    def end(self) -> Awaitable[None]:
        return self.inner.end()
