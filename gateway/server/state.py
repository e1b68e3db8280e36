"""What the connections of one server share: app, settings, default headers, counters, and
the registry of live connections that drain() walks."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Final, Protocol

import structlog

from gateway.pipeline.context import App
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.settings import ServerSettings

log = structlog.get_logger("gateway.server")

READ_HIGH_WATER: Final = 64 * 1024  # unparsed bytes held before the socket is paused
BODY_HIGH_WATER: Final = 64 * 1024  # request body held for an app that is not reading
LINGER_SECONDS: Final = 2.0  # read-and-discard after an early close so the reply is not RST


class Connection(Protocol):
    def shutdown(self) -> None:
        """Drain: finish what is in flight (HTTP/1 connection: close, HTTP/2 GOAWAY), then close."""
        ...

    def abort(self) -> None:
        """Drain timeout: close now and stop the apps still running."""
        ...


class ServerState:
    """Shared by every connection of one listener; the counters are read by metrics."""

    def __init__(
        self,
        app: App,
        settings: ServerSettings,
        defaults: ResponseDefaults,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.settings = settings
        self.defaults = defaults
        self.loop = loop
        # app tasks start from this context, not from whatever task happened to be running
        self.context = contextvars.copy_context()
        self.connections: set[Connection] = set()
        self.draining = False
        self.total_connections = 0
        self.http2_connections = 0  # currently open
        self.active_requests = 0
        self.requests_served = 0
        self._all_closed = asyncio.Event()

    def opened(self, conn: Connection) -> None:
        self.connections.add(conn)
        self.total_connections += 1
        self._all_closed.clear()

    def replaced(self, old: Connection, new: Connection) -> None:
        self.connections.discard(old)
        self.connections.add(new)

    def closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._all_closed.set()

    async def wait_all_closed(self) -> None:
        if self.connections:
            await self._all_closed.wait()
