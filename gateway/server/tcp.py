"""The TCP (and TLS) listener: accepts connections, hands each to HTTP/1.1 or HTTP/2, counts
them, and drains them on shutdown without relying on Server.wait_closed().

On a socket every worker process shares (more than one process), connections are accepted
by gateway/server/acceptor.py, one at a time and only while this worker is not clearly
busier than the least-loaded one; alone, by the event loop's own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from gateway.pipeline.context import App
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.acceptor import BalancedAcceptor
from gateway.server.balance import WorkerLoad
from gateway.server.dateheader import DateClock
from gateway.server.dispatch import connection_factory
from gateway.server.settings import ServerSettings
from gateway.server.state import Connection, ServerState


class _BalancedState(ServerState):
    """Keeps the worker's slot of the load table up to date. Every connection comes from
    the acceptor, which counted it when it took it: opening only confirms that count."""

    load: WorkerLoad

    def opened(self, conn: Connection) -> bool:
        if super().opened(conn):
            return True
        self.load.add(-1)  # refused (MAX_CONNECTIONS)
        return False

    def closed(self, conn: Connection) -> None:
        if conn in self.connections:
            self.load.add(-1)
        super().closed(conn)


class TCPServer:
    """Serve `app` on one listening socket, cleartext or TLS.

    Counters for metrics (plain attributes of `state`, mirrored as properties here):
    open_connections, total_connections, http2_connections, active_requests,
    requests_served.

    `load`: the socket is shared with other worker processes; accept by the balancing rule
    and count this server's connections in the worker's slot (gateway/server/balance.py).
    """

    def __init__(
        self,
        app: App,
        settings: ServerSettings | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        defaults: ResponseDefaults | None = None,
        load: WorkerLoad | None = None,
    ) -> None:
        self.app = app
        self.load = load
        self.settings = settings if settings is not None else ServerSettings()
        self.ssl_context = ssl_context
        server_header = self.settings.server_header
        self.defaults = defaults if defaults is not None else ResponseDefaults(
            server=server_header.encode("latin-1") if server_header else None,
            extra=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in self.settings.extra_response_headers
            ],
        )
        self._server: asyncio.Server | None = None
        self._acceptor: BalancedAcceptor | None = None
        self._state: ServerState | None = None
        self._clock: DateClock | None = None
        self._port = 0

    @property
    def state(self) -> ServerState:
        if self._state is None:
            raise RuntimeError("server not started")
        return self._state

    async def start(
        self, sock: socket.socket | None = None, host: str | None = None, port: int = 0
    ) -> None:
        """Listen on an already-bound socket (the supervisor's) or bind host:port."""
        loop = asyncio.get_running_loop()
        state: ServerState
        if self.load is not None and sock is not None:
            state = _BalancedState(self.app, self.settings, self.defaults, loop)
            state.load = self.load
        else:
            state = ServerState(self.app, self.settings, self.defaults, loop)
        self._state = state
        tls = self.ssl_context is not None
        self._clock = DateClock(self.defaults, loop)
        self._clock.start()

        factory = connection_factory(state, tls)
        handshake = self.settings.tls_handshake_timeout if tls else None
        if sock is not None and self.load is not None:
            sock.listen(self.settings.backlog)  # the first worker ready makes it listen
            self._acceptor = BalancedAcceptor(loop, sock, factory, self.load,
                                              self.ssl_context, handshake)
            self._acceptor.start()
            self._port = int(sock.getsockname()[1])
            return
        if sock is not None:
            sock.setblocking(False)
            self._server = await loop.create_server(
                factory, sock=sock, ssl=self.ssl_context, ssl_handshake_timeout=handshake,
                backlog=self.settings.backlog,
            )
        else:
            self._server = await loop.create_server(
                factory, host=host or "127.0.0.1", port=port, ssl=self.ssl_context,
                ssl_handshake_timeout=handshake, backlog=self.settings.backlog,
                reuse_address=True,
            )
        self._port = int(self._server.sockets[0].getsockname()[1])  # kept after close()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        if self._acceptor is not None:
            return (self._acceptor.sock,)
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        return self._port

    async def drain(self, timeout: float | None = None) -> None:
        """Stop accepting; HTTP/1 finishes in-flight requests with connection: close and
        closes idle keep-alive connections now; HTTP/2 sends GOAWAY. Waits until every
        connection is gone or `timeout` (default settings.drain_timeout) passes, then aborts
        the rest."""
        state = self.state
        if timeout is None:
            timeout = self.settings.drain_timeout
        if self._server is not None:
            self._server.close()  # no wait_closed(): on 3.12+ it waits for every connection
        if self._acceptor is not None:
            self._acceptor.close()  # our copy; the socket closes with the last process's
        state.draining = True
        for conn in list(state.connections):
            conn.shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.wait_all_closed(), timeout)
        for conn in list(state.connections):
            conn.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        if self._clock is not None:
            self._clock.stop()

    async def close(self) -> None:
        await self.drain(0)

    # counters, read by the metrics layer

    @property
    def open_connections(self) -> int:
        return len(self.state.connections)

    @property
    def total_connections(self) -> int:
        return self.state.total_connections

    @property
    def http2_connections(self) -> int:
        return self.state.http2_connections

    @property
    def active_requests(self) -> int:
        return self.state.active_requests

    @property
    def requests_served(self) -> int:
        return self.state.requests_served


async def serve(
    app: App,
    settings: ServerSettings | None = None,
    *,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> TCPServer:
    """Start a TCPServer and return it (call `await server.drain()` to stop)."""
    server = TCPServer(app, settings, ssl_context=ssl_context)
    await server.start(sock=sock, host=host, port=port)
    return server
