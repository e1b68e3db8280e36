"""What the connections of one server share: app, settings, default headers, counters, and
the registry of live connections that drain() walks."""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from typing import ClassVar, Final, Protocol

import structlog

from gateway.pipeline.context import App
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.settings import ServerSettings

log = structlog.get_logger("gateway.server")

READ_HIGH_WATER: Final = 64 * 1024  # unparsed bytes held before the socket is paused
BODY_HIGH_WATER: Final = 64 * 1024  # request body held for an app that is not reading
LINGER_SECONDS: Final = 2.0  # read-and-discard after an early close so the reply is not RST
CLOSE_FLUSH_SECONDS: Final = 5.0  # a closing connection whose peer reads nothing is aborted
WARN_EVERY: Final = 10.0  # seconds between two warnings of the same kind


class Connection(Protocol):
    def shutdown(self) -> None:
        """Drain: finish what is in flight (HTTP/1 connection: close, HTTP/2 GOAWAY), then close."""
        ...

    def abort(self) -> None:
        """Drain timeout: close now and stop the apps still running."""
        ...


class Flushable(Protocol):
    def flush(self) -> None:
        """Write what was queued to leave at the end of the loop pass."""
        ...


class ConnectionLimit:
    """MAX_CONNECTIONS (nginx's worker_connections): open connections of one worker process
    over all its listeners. One per event loop, which is one per worker process."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionLimit]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0
        self.refused = 0  # connections closed at once because the limit was reached
        self._warned_at = -WARN_EVERY

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, maximum: int) -> ConnectionLimit:
        limit = cls._by_loop.get(loop)
        if limit is None:
            limit = cls._by_loop[loop] = cls(maximum)
        return limit

    def admit(self) -> bool:
        if self.open < self.maximum:
            self.open += 1
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:  # a flood must not flood the log too
            self._warned_at = now
            log.warning("connection limit reached: refusing new connections",
                        max_connections=self.maximum, refused_so_far=self.refused)
        return False

    def release(self) -> None:
        self.open -= 1


def close_transport(transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
    """Close after what is queued has been written; a peer that does not read for
    CLOSE_FLUSH_SECONDS cannot keep the socket: it is aborted then."""
    transport.close()
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        loop.call_later(CLOSE_FLUSH_SECONDS, transport.abort)


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
        self.tls_handshake_failures = 0  # failed or timed out before a protocol took over
        self.limit = ConnectionLimit.of(loop, settings.max_connections)
        self._all_closed = asyncio.Event()
        self._to_flush: list[Flushable] = []
        self._flush_handle: asyncio.Handle | None = None

    def flush_soon(self, conn: Flushable) -> None:
        """`conn.flush()` once the current loop pass is over: one callback for all the
        connections that ask in a pass (a call_soon per response costs ~3,400 instructions)."""
        self._to_flush.append(conn)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_all, context=self.context)

    def _flush_all(self) -> None:
        self._flush_handle = None
        conns = self._to_flush
        self._to_flush = []
        for conn in conns:
            try:
                conn.flush()
            except Exception as exc:  # one connection's failure must not keep the others' bytes
                self.loop.call_exception_handler(
                    {"message": "flush failed", "exception": exc, "protocol": conn}
                )

    def opened(self, conn: Connection) -> bool:
        """Count a new connection; False (and nothing counted) past MAX_CONNECTIONS."""
        if not self.limit.admit():
            return False
        self.connections.add(conn)
        self.total_connections += 1
        self._all_closed.clear()
        return True

    def replaced(self, old: Connection, new: Connection) -> None:
        self.connections.discard(old)
        self.connections.add(new)

    def closed(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self.limit.release()
        if not self.connections:
            self._all_closed.set()

    async def wait_all_closed(self) -> None:
        if self.connections:
            await self._all_closed.wait()
