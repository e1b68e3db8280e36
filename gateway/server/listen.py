"""Starts a worker's servers on the sockets the supervisor bound: plain HTTP, HTTPS (when
TLS has its own address), HTTP/3 on the TLS port's UDP twin, and the internal endpoints.
With `load` (more than one worker process), HTTP and HTTPS accept by the balancing rule of
gateway/server/balance.py from the sockets all workers share."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from typing import Protocol

from gateway.config import Config
from gateway.pipeline.context import App
from gateway.server.balance import WorkerLoad
from gateway.server.settings import ServerSettings
from gateway.server.state import ServerState
from gateway.server.tcp import TCPServer
from gateway.server.tls import create_ssl_context


class Drainable(Protocol):
    @property
    def state(self) -> ServerState:
        """Its connections' counts, for the metrics."""
        ...

    async def drain(self, timeout: float) -> None:
        """Close the listening socket at once, then give connections `timeout` seconds."""
        ...


@dataclass(slots=True)
class Servers:
    public: list[Drainable] = field(default_factory=list)  # HTTP, HTTPS, HTTP/3
    internal: Drainable | None = None  # drained last: probes read "not ready" meanwhile


def server_settings(config: Config) -> ServerSettings:
    return ServerSettings(
        http1_parser=config.http1_parser,
        http2_impl=config.http2_impl,
        header_timeout=config.header_timeout_secs,
        idle_timeout=config.idle_timeout_secs,
        body_timeout=config.body_timeout_secs,
        send_timeout=config.send_timeout_secs,
        max_connections=config.max_connections,
        tls_handshake_timeout=config.tls_handshake_timeout_secs,
        drain_timeout=config.drain_timeout_secs,
        max_header_bytes=config.max_header_size,
        max_request_line=config.max_request_line,
        max_body_bytes=config.max_body_size,
        h2_max_concurrent_streams=config.h2_max_concurrent_streams,
        h2_max_header_list_size=config.h2_max_header_list_size,
    )


async def start_listeners(config: Config, sockets: dict[str, socket.socket], app: App,
                          internal: App, load: WorkerLoad | None = None) -> Servers:
    settings = server_settings(config)
    ssl_context = None
    if config.tls:
        assert config.tls_cert is not None
        ssl_context = create_ssl_context(config.tls_cert, config.tls_key)
    servers = Servers()
    quic_sock = sockets.get("quic")
    tls_settings = settings
    if quic_sock is not None:
        from gateway.server.quic import alt_svc_header, start_quic_server

        port = quic_sock.getsockname()[1]
        name, value = alt_svc_header(port)
        alt_svc = ((name.decode("latin-1"), value.decode("latin-1")),)
        tls_settings = replace(settings, extra_response_headers=alt_svc)
        assert config.tls_cert is not None
        servers.public.append(await start_quic_server(
            quic_sock, app, certfile=str(config.tls_cert),
            keyfile=str(config.tls_key) if config.tls_key else None,
            settings=settings))
    # beside a separate TLS listener, plain HTTP advertises h3 too (an authenticated alternative)
    http = TCPServer(app, tls_settings, ssl_context=None if "tls" in sockets else ssl_context,
                     load=load)
    await http.start(sock=sockets["http"])
    servers.public.append(http)
    if "tls" in sockets:
        https = TCPServer(app, tls_settings, ssl_context=ssl_context, load=load)
        await https.start(sock=sockets["tls"])
        servers.public.append(https)
    if "internal" in sockets:
        internal_server = TCPServer(internal, replace(settings, server_header=None))
        await internal_server.start(sock=sockets["internal"])
        servers.internal = internal_server
    return servers
