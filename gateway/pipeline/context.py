"""The contract between the connection layer (gateway/server/) and the pipeline.

For every request the server builds an object satisfying `RequestContext` and awaits
`app(ctx)`. The same pipeline therefore serves HTTP/1.1, HTTP/2 and HTTP/3: only the
context implementation differs per protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.protocol.events import Headers, Request


class RequestContext(Protocol):
    request: Request
    client: tuple[str, int]  # peer address and port
    server: tuple[str, int]  # local address and port the request arrived on
    tls: bool
    # set when the peer is gone (reset stream, closed socket): stop work, send nothing more
    disconnected: asyncio.Event

    async def receive(self) -> bytes | None:
        """Next request-body chunk; None once the body is complete.

        Reading is flow-controlled: while the pipeline does not call receive(), the
        connection stops reading the socket (HTTP/1) or granting window (HTTP/2, HTTP/3).
        """
        ...

    def take_complete_body(self) -> bytes | None:
        """The whole request body if it has all arrived already, else None (use receive())."""
        ...

    async def send_response(self, status: int, headers: Headers) -> None:
        """Start the response. Headers are lower-case names; the connection layer adds
        date, server, alt-svc and framing headers (content-length / chunked) itself."""
        ...

    async def send_data(self, data: bytes) -> None:
        """Send body bytes; returns once the transport can take more (backpressure)."""
        ...

    async def end(self) -> None:
        """Finish the response (final chunk, END_STREAM)."""
        ...


App = Callable[[RequestContext], Awaitable[None]]
