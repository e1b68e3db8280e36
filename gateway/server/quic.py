"""The HTTP/3 listener: an asyncio DatagramProtocol on an already-bound UDP socket.

Every datagram is handled synchronously in datagram_received(): routed by destination
connection ID to its connection and fed to aioquic at once, so a burst is absorbed by the
socket's receive buffer (SO_RCVBUF, raised to 4 MiB) and never by a small queue that drops.

Address validation: a Retry (RFC 9000 §8.1.2) costs the client one round trip, so by default
("auto") it is only demanded while many handshakes are in flight, as quic-go does; "on"
demands it always, "off" never. Until a client's address is validated aioquic keeps the
server to 3x the bytes it received (anti-amplification, RFC 9000 §8.1). Version
negotiation is only answered for datagrams of Initial size, so it cannot amplify either.

Drain closes the listening socket at once, so new clients are refused (ICMP port
unreachable once every worker's socket is closed) and go elsewhere, while the connections
in flight go on: each is handed a socket of its own, bound to the same port and connected
to its client, which the kernel prefers to the SO_REUSEPORT group for that client's packets.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

import structlog
from aioquic._buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.pipeline.context import App
from gateway.protocol.http3 import ALPN, CONNECTION_WINDOW, STREAM_WINDOW, Http3Adapter
from gateway.protocol.response_headers import ResponseDefaults
from gateway.server.dateheader import DateClock
from gateway.server.h3_connection import H3Connection
from gateway.server.settings import ServerSettings
from gateway.server.state import ServerState

log = structlog.get_logger("gateway.server.quic")

RECEIVE_BUFFER: Final = 4 * 1024 * 1024
RetryPolicy = Literal["auto", "on", "off"]


def alt_svc_header(port: int, max_age: int = 86400) -> tuple[bytes, bytes]:
    """The Alt-Svc field every TCP response carries so that clients find HTTP/3 on `port`."""
    return b"alt-svc", b'h3=":%d"; ma=%d' % (port, max_age)


@dataclass(frozen=True, slots=True)
class QuicSettings:
    """QUIC knobs; HTTP-level limits (streams, headers, body, timeouts) come from
    ServerSettings so that HTTP/2 and HTTP/3 share them. Sizes are bytes.

    - stream_window: receive window per request stream; an app that does not read holds
      at most this much of its upload in memory.
    - connection_window: initial connection-level window (aioquic grows it as data arrives).
    - send_high_water: unsent response bytes per stream above which send_data() waits.
    - max_datagram_size: UDP payload we send; 1200 is safe on every path (aioquic does no
      path-MTU discovery).
    - retry: see the module docstring; retry_above_handshakes is the "auto" threshold.
    - max_connections: new connections beyond this are ignored (clients retry or fall back).
    """

    stream_window: int = STREAM_WINDOW
    connection_window: int = CONNECTION_WINDOW
    send_high_water: int = 256 * 1024
    max_datagram_size: int = SMALLEST_MAX_DATAGRAM_SIZE
    retry: RetryPolicy = "auto"
    retry_above_handshakes: int = 64
    max_connections: int = 10000
    receive_buffer: int = RECEIVE_BUFFER
    congestion_control: str = "reno"

    def __post_init__(self) -> None:
        if self.retry not in ("auto", "on", "off"):
            raise ValueError(f"retry must be auto, on or off, not {self.retry!r}")
        if self.congestion_control not in ("reno", "cubic"):
            raise ValueError(f"congestion_control must be reno or cubic, not "
                             f"{self.congestion_control!r}")
        if self.max_datagram_size < SMALLEST_MAX_DATAGRAM_SIZE:
            raise ValueError(f"max_datagram_size must be at least {SMALLEST_MAX_DATAGRAM_SIZE}")
        for name in ("stream_window", "connection_window", "send_high_water",
                     "max_connections", "receive_buffer"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def server_configuration(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    settings: ServerSettings,
    quic: QuicSettings,
) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=list(ALPN),
        idle_timeout=settings.idle_timeout,
        max_data=quic.connection_window,
        max_stream_data=quic.stream_window,
        max_datagram_size=quic.max_datagram_size,
        congestion_control_algorithm=quic.congestion_control,
    )
    load_identity(configuration, certfile, keyfile)
    return configuration


_PEM_CERT: Final = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_KEY: Final = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S
)


def load_identity(
    configuration: QuicConfiguration,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
) -> None:
    """Certificate chain and key from PEM files, in any order and either file (what
    ssl.load_cert_chain accepts; aioquic's own loader misses a key placed first)."""
    cert_pem = Path(certfile).read_bytes()
    key_pem = Path(keyfile).read_bytes() if keyfile is not None else cert_pem
    certificates = [x509.load_pem_x509_certificate(m.group(0))
                    for m in _PEM_CERT.finditer(cert_pem)]
    if not certificates:
        raise ValueError(f"no PEM certificate in {certfile}")
    key = _PEM_KEY.search(key_pem)
    if key is None:
        raise ValueError(f"no PEM private key in {keyfile if keyfile is not None else certfile}")
    configuration.certificate = certificates[0]
    configuration.certificate_chain = certificates[1:]
    configuration.private_key = serialization.load_pem_private_key(key.group(0), password=None)


def defaults_from(settings: ServerSettings) -> ResponseDefaults:
    server = settings.server_header.encode("latin-1") if settings.server_header else None
    extra = [(n.encode("latin-1"), v.encode("latin-1"))
             for n, v in settings.extra_response_headers]
    return ResponseDefaults(server=server, extra=extra)


class QuicServer(asyncio.DatagramProtocol):
    """Routes datagrams to QUIC connections; drain() and close() end it."""

    def __init__(
        self,
        state: ServerState,
        configuration: QuicConfiguration,
        quic: QuicSettings,
        server_addr: tuple[str, int],
    ) -> None:
        self.state = state
        self.configuration = configuration
        self.quic = quic
        self.server_addr = server_addr
        self.transport: asyncio.DatagramTransport | None = None
        self._routes: dict[bytes, H3Connection] = {}
        self._connections: set[H3Connection] = set()
        self._retry = QuicRetryTokenHandler()
        self._handshaking = 0
        self._write_paused = False
        self._closed = asyncio.Event()
        self._stopping = False
        self._clock: DateClock | None = None
        # drain: client address -> the connected socket its connection goes on with
        self._peers: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.hand_over = False  # set when the listening socket is SO_REUSEPORT
        self._v6only = 0
        self.datagrams_received = 0
        self.retries_sent = 0

    # -- asyncio.DatagramProtocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector loops do not subclass DatagramTransport, uvloop does: trust the endpoint
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._stopping:
            self._closed.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable after a client left) arrive here; QUIC times them out
        log.debug("udp error", error=str(exc))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for conn in list(self._connections):
            conn.transmit_soon()

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        self.datagrams_received += 1
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self.configuration.connection_id_length
            )
        except ValueError:
            return
        conn = self._routes.get(header.destination_cid)
        if conn is None:
            conn = self._accept(data, addr, header.packet_type, header.version,
                                header.destination_cid, header.source_cid, header.token)
            if conn is None:
                return
        conn.datagram_received(data, addr)

    # -- new connections -------------------------------------------------------------------

    def _accept(
        self,
        data: bytes,
        addr: NetworkAddress,
        packet_type: QuicPacketType,
        version: int | None,
        dcid: bytes,
        scid: bytes,
        token: bytes,
    ) -> H3Connection | None:
        transport = self.transport
        if transport is None or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            return None  # only full-size Initials start anything: no amplification
        if (
            version is not None
            and packet_type != QuicPacketType.VERSION_NEGOTIATION
            and version not in self.configuration.supported_versions
        ):
            transport.sendto(
                encode_quic_version_negotiation(
                    source_cid=dcid, destination_cid=scid,
                    supported_versions=self.configuration.supported_versions,
                ),
                addr,
            )
            return None
        if packet_type != QuicPacketType.INITIAL or version is None:
            return None
        if self.state.draining or len(self._connections) >= self.quic.max_connections:
            return None
        odcid: bytes | None = dcid
        retry_scid: bytes | None = None
        if token:
            try:
                odcid = self._retry.validate_token(
                    address=addr, destination_cid=dcid, token=token, now=self.state.loop.time()
                )
                retry_scid = dcid
            except ValueError:
                token = b""  # not ours, expired or from another address: as if none was sent
        if not token and self._needs_retry():
            self.retries_sent += 1
            new_scid = os.urandom(8)
            transport.sendto(
                encode_quic_retry(
                    version=version,
                    source_cid=new_scid,
                    destination_cid=scid,
                    original_destination_cid=dcid,
                    retry_token=self._retry.create_token(
                        address=addr,
                        original_destination_connection_id=dcid,
                        retry_source_connection_id=new_scid,
                        now=self.state.loop.time(),
                    ),
                ),
                addr,
            )
            return None
        if self.state.limit.open >= self.state.limit.maximum:
            self.state.limit.admit()  # counts and logs the refusal; the datagram is dropped
            return None
        try:
            adapter = self._new_adapter(odcid, retry_scid)
        except Exception:  # a datagram must never take the listener down
            log.exception("cannot create a QUIC connection")
            return None
        conn = H3Connection(self.state, self, adapter, addr, self.server_addr,
                            self.quic.send_high_water)
        conn.on_handshake = self._handshake_done
        self._connections.add(conn)
        self._handshaking += 1
        self.state.opened(conn)
        for cid in (dcid, adapter.quic.host_cid):
            conn.cids.add(cid)
            self._routes[cid] = conn
        return conn

    def _new_adapter(self, odcid: bytes | None, retry_scid: bytes | None) -> Http3Adapter:
        settings = self.state.settings
        return Http3Adapter(
            self.configuration,
            original_destination_connection_id=odcid,
            retry_source_connection_id=retry_scid,
            defaults=self.state.defaults,
            max_concurrent_streams=settings.h2_max_concurrent_streams,
            max_header_list_size=settings.h2_max_header_list_size,
            max_body_bytes=settings.body_limit,
            rapid_reset_limit=settings.h2_rapid_reset_limit,
            rapid_reset_window=settings.h2_rapid_reset_window,
        )

    def _needs_retry(self) -> bool:
        policy = self.quic.retry
        if policy == "auto":
            return self._handshaking >= self.quic.retry_above_handshakes
        return policy == "on"

    def _handshake_done(self, conn: H3Connection) -> None:
        self._handshaking -= 1

    # -- QuicEndpoint (used by the connections) ------------------------------------------------

    def sendto(self, data: bytes, addr: NetworkAddress) -> None:
        if self._peers:
            peer = self._peers.get((addr[0], addr[1]))
            if peer is not None:
                peer.sendto(data)  # connected: uvloop drops a datagram given an address
                return
        if self.transport is not None:
            self.transport.sendto(data, addr)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def route(self, cid: bytes, conn: H3Connection) -> None:
        self._routes[cid] = conn

    def unroute(self, cid: bytes) -> None:
        self._routes.pop(cid, None)

    def forget(self, conn: H3Connection) -> None:
        for cid in conn.cids:
            if self._routes.get(cid) is conn:
                del self._routes[cid]
        conn.cids.clear()
        if conn in self._connections:
            self._connections.discard(conn)
            if conn.handshaking:
                self._handshaking -= 1
                conn.handshaking = False
                self.state.tls_handshake_failures += 1  # gone before its handshake ended

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def address(self) -> tuple[str, int]:
        return self.server_addr

    async def drain(self, timeout: float) -> None:
        """Graceful stop: close the listening socket (new clients are refused), GOAWAY the
        connections, let requests in flight finish for up to `timeout` seconds, whatever
        the clients do, then close everything."""
        self.state.draining = True
        for conn in list(self._connections):
            conn.shutdown()
        await self._hand_over()
        try:
            async with asyncio.timeout(timeout):
                await self.state.wait_all_closed()
        except TimeoutError:
            log.warning("http3 drain timed out", connections=len(self.state.connections))
        self.close()

    async def _hand_over(self) -> None:
        """Move every connection to a socket connected to its client, then close the
        listening socket. Without SO_REUSEPORT (or when a socket cannot be made) the
        listening socket stays open until the connections end, as the only way to them."""
        listener = self.transport
        if listener is None or not self.hand_over:
            return
        loop = self.state.loop
        host, port = self.server_addr
        for conn in list(self._connections):
            peer = conn.client
            if peer in self._peers:
                continue
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if sock.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, self._v6only)
                sock.bind((host, port))
                sock.connect(peer)
                sock.setblocking(False)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _PeerEndpoint(self), sock=sock)
            except OSError as exc:
                sock.close()
                log.warning("http3 drain keeps the listening socket open", error=str(exc))
                return
            self._peers[peer] = transport
        listener.close()

    def close(self) -> None:
        """Stop now: CONNECTION_CLOSE to every connection, then close the sockets."""
        self.state.draining = True
        self._stopping = True
        for conn in list(self._connections):
            conn.terminate()
        if self._clock is not None:
            self._clock.stop()
            self._clock = None
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        if self.transport is not None:
            self.transport.close()
        else:
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class _PeerEndpoint(asyncio.DatagramProtocol):
    """A connected socket made by the drain: its datagrams go the listener's way."""

    def __init__(self, server: QuicServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        self.server.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.server.error_received(exc)

    def pause_writing(self) -> None:
        self.server.pause_writing()

    def resume_writing(self) -> None:
        self.server.resume_writing()


def _raise_receive_buffer(sock: socket.socket, size: int) -> int:
    """SO_RCVBUF is capped by net.core.rmem_max; SO_RCVBUFFORCE (CAP_NET_ADMIN) is not."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


async def start_quic_server(
    sock: socket.socket,
    app: App,
    *,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    settings: ServerSettings | None = None,
    quic: QuicSettings | None = None,
    defaults: ResponseDefaults | None = None,
) -> QuicServer:
    """Serve HTTP/3 with `app` on a bound UDP socket.

    `defaults` are the headers every response carries; pass the TCP server's object to
    share its Date clock, or leave None to build one from `settings` (with its own clock).
    """
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError("start_quic_server needs a UDP (SOCK_DGRAM) socket")
    settings = settings if settings is not None else ServerSettings()
    quic = quic if quic is not None else QuicSettings()
    if settings.h2_max_header_list_size >= quic.stream_window:
        # a header block is only credited once parsed, so it must fit in one stream window
        raise ValueError(f"h2_max_header_list_size ({settings.h2_max_header_list_size}) must "
                         f"be smaller than the QUIC stream_window ({quic.stream_window})")
    configuration = server_configuration(certfile, keyfile, settings, quic)
    loop = asyncio.get_running_loop()
    clock: DateClock | None = None
    if defaults is None:
        defaults = defaults_from(settings)
        clock = DateClock(defaults, loop)
        clock.start()
    sock.setblocking(False)
    rcvbuf = _raise_receive_buffer(sock, quic.receive_buffer)
    if rcvbuf < quic.receive_buffer:
        log.warning("udp receive buffer smaller than asked; raise net.core.rmem_max",
                    asked=quic.receive_buffer, got=rcvbuf)
    name = sock.getsockname()
    state = ServerState(app, settings, defaults, loop)
    server = QuicServer(state, configuration, quic, (str(name[0]), int(name[1])))
    server._clock = clock
    server.hand_over = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
    if sock.family == socket.AF_INET6:
        server._v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    await loop.create_datagram_endpoint(lambda: server, sock=sock)
    return server
