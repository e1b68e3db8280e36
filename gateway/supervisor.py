"""The supervisor: binds the listening sockets, spawns worker processes that inherit them,
restarts a worker that dies, and on SIGTERM/SIGINT asks every worker to drain.

Workers are fresh interpreters (`python -m gateway.worker`), never forks: a process with
live PHP threads must not fork. Each re-reads the same flags and environment, so the
configuration is parsed identically everywhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from gateway.config import Config, HostPort

log = structlog.get_logger("gateway.supervisor")

RESTART_BACKOFF_MAX = 30.0
QUICK_DEATH_SECS = 5.0  # a worker dying sooner than this after start backs off


@dataclass(slots=True)
class Listeners:
    """Sockets the workers inherit, by role.

    TCP listeners are one SO_REUSEPORT socket per worker, like nginx's `reuseport`: the
    kernel spreads new connections over them by address hash. With one shared socket the
    first worker to wake accepted a whole burst (all ten connections of an HTTP/2 client
    pool landed in one process while the other idled). The supervisor keeps every socket
    open, so connections that arrive while a worker restarts wait in its socket's backlog.
    """

    http: list[socket.socket]
    tls: list[socket.socket] = field(default_factory=list)  # when TLS has its own address
    # UDP on the TLS listener's port, one SO_REUSEPORT socket per worker: the kernel hashes
    # a client's address to one socket, so each QUIC connection stays in one process.
    quic: list[socket.socket] = field(default_factory=list)
    internal: socket.socket | None = None

    def roles(self, worker: int) -> dict[str, socket.socket]:
        out = {"http": self.http[worker]}
        if self.tls:
            out["tls"] = self.tls[worker]
        if self.quic:
            out["quic"] = self.quic[worker]
        if self.internal is not None:
            out["internal"] = self.internal
        return out


def _tcp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def bind_tcp(addr: HostPort, option: str, count: int = 1) -> list[socket.socket]:
    """`count` listening sockets on one address (SO_REUSEPORT when more than one).

    A plain bind comes first, so a port another process holds (even with SO_REUSEPORT)
    is refused at start-up instead of silently shared; it also resolves port 0."""
    socks: list[socket.socket] = []
    probe = _tcp_socket(addr.host)
    try:
        probe.bind((addr.host, addr.port))
        port = probe.getsockname()[1]
        if count == 1:
            socks.append(probe)
        else:
            probe.close()
            for _ in range(count):
                sock = _tcp_socket(addr.host)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((addr.host, port))
    except OSError as exc:
        probe.close()
        for sock in socks:
            sock.close()
        raise SystemExit(
            f"php-gateway: {option}: cannot listen on {addr}: {exc.strerror}"
        ) from None
    for sock in socks:
        sock.listen(4096)
        sock.set_inheritable(True)
    return socks


def bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"php-gateway: --http3 / HTTP3: cannot bind UDP {host}:{port}: {exc.strerror}"
        ) from None
    sock.set_inheritable(True)
    return sock


def bind_listeners(config: Config) -> Listeners:
    n = config.processes
    http = bind_tcp(config.listen_addr, "--listen-addr / LISTEN_ADDR", n)
    listeners = Listeners(http=http)
    tls_sock = http[0]
    if config.tls and config.tls_listen_addr is not None:
        listeners.tls = bind_tcp(config.tls_listen_addr, "--tls-listen-addr / TLS_LISTEN_ADDR", n)
        tls_sock = listeners.tls[0]
    if config.tls and config.http3:
        host, port = tls_sock.getsockname()[:2]
        listeners.quic = [bind_udp(host, port) for _ in range(n)]
    if config.internal_addr is not None:
        listeners.internal = bind_tcp(config.internal_addr, "--internal-addr / INTERNAL_ADDR")[0]
    return listeners


def _sockname(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_addresses(config: Config, listeners: Listeners) -> dict[str, str]:
    """What the start-up log names: only sockets that are bound, by what they serve
    (with TLS and no TLS_LISTEN_ADDR, LISTEN_ADDR itself serves HTTPS)."""
    out: dict[str, str] = {}
    if config.tls and not listeners.tls:
        out["https"] = _sockname(listeners.http[0])
    else:
        out["http"] = _sockname(listeners.http[0])
    if listeners.tls:
        out["https"] = _sockname(listeners.tls[0])
    if listeners.quic:
        out["http3"] = _sockname(listeners.quic[0]) + "/udp"
    if listeners.internal is not None:
        out["internal"] = _sockname(listeners.internal)
    return out


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


class Supervisor:
    def __init__(self, config: Config, listeners: Listeners, argv: Sequence[str]) -> None:
        self.config = config
        self.listeners = listeners
        self.argv = list(argv)
        self.workers = [_Worker(i) for i in range(config.processes)]
        self.stopping = False

    def _spawn(self, w: _Worker) -> None:
        roles = self.listeners.roles(w.index)
        fds = ",".join(f"{role}={sock.fileno()}" for role, sock in roles.items())
        cmd = [sys.executable, "-m", "gateway.worker", "--worker-index", str(w.index),
               "--fds", fds, "--", *self.argv]
        w.proc = subprocess.Popen(cmd, pass_fds=[s.fileno() for s in roles.values()])
        w.started = time.monotonic()
        log.info("worker started", worker=w.index, pid=w.proc.pid)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("draining", signal=signal.Signals(signum).name,
                 timeout=self.config.drain_timeout_secs)
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for w in self.workers:
            self._spawn(w)
        while not self.stopping:
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and (code := w.proc.poll()) is not None and not self.stopping:
                    quick = now - w.started < QUICK_DEATH_SECS
                    w.failures = w.failures + 1 if quick else 0
                    delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** w.failures) if quick else 0.0
                    log.error("worker died", worker=w.index, pid=w.proc.pid, exit_code=code,
                              restart_in=delay)
                    w.proc = None
                    w.restart_at = now + delay
                if w.proc is None and not self.stopping and now >= w.restart_at:
                    self._spawn(w)
            time.sleep(0.1)
        deadline = time.monotonic() + self.config.drain_timeout_secs + 5
        code = 0
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not drain in time; killing it", worker=w.index)
                w.proc.kill()
                w.proc.wait()
                code = 1
        log.info("stopped")
        return code


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.observability.logging import configure_logging

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        config = load_config(args, os.environ)
    except ConfigError as exc:
        print(f"php-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.service_name)
    listeners = bind_listeners(config)
    log.info("listening", **listening_addresses(config, listeners), processes=config.processes,
             php_workers=config.php_workers, document_root=str(config.document_root))
    return Supervisor(config, listeners, args).run()
