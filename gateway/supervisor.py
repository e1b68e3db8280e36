"""The supervisor: binds the listening sockets, spawns worker processes that inherit them,
restarts a worker that dies, and on SIGTERM/SIGINT asks every worker to drain.

A worker that dies after it became ready (a crash while serving) is restarted at once, as
nginx respawns a crashed worker; only one that dies before it is ready (a broken
configuration, a PHP that cannot start) waits 1, 2, 4 ... 30 s before the next attempt.

Workers are fresh interpreters (`python -m gateway.worker`), never forks: a process with
live PHP threads must not fork. Each re-reads the same flags and environment, so the
configuration is parsed identically everywhere.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway.config import Config, HostPort
from gateway.pipeline.rate_table import RateTable

log = structlog.get_logger("gateway.supervisor")

RESTART_BACKOFF_MAX = 30.0
KILL_GRACE_SECS = 5.0  # a worker still alive this long after its drain window is killed


@dataclass(slots=True)
class Listeners:
    """Sockets the workers inherit, by role.

    TCP listeners are one SO_REUSEPORT socket per worker, like nginx's `reuseport`: the
    kernel spreads new connections over them by address hash. With one shared socket the
    first worker to wake accepted a whole burst (all ten connections of an HTTP/2 client
    pool landed in one process while the other idled).

    The supervisor keeps no copy of a worker's TCP sockets once the worker has them
    (`release`), so they close with the worker: from that moment the kernel hashes new
    connections to live workers only. (Connections already queued in a dead worker's socket
    are reset, or moved to a live socket where net.ipv4.tcp_migrate_req=1; a copy kept here
    would hold them, and keep taking new ones, until the restart.) A replacement gets fresh
    sockets (`rebind`) that listen only once it is ready: asyncio's create_server listens.

    The UDP sockets and the shared internal socket stay here for replacements: closing one
    UDP socket of the group changes the group's size, and the kernel's hash would then send
    the QUIC packets of other workers' connections to the wrong process. SIGTERM closes
    them (`close_held`), so that the workers' own close during the drain is final.
    """

    http: list[socket.socket]
    tls: list[socket.socket] = field(default_factory=list)  # when TLS has its own address
    # UDP on the TLS listener's port, one SO_REUSEPORT socket per worker: the kernel hashes
    # a client's address to one socket, so each QUIC connection stays in one process.
    quic: list[socket.socket] = field(default_factory=list)
    internal: socket.socket | None = None
    # role -> (host, port) the TCP sockets are bound to, for replacements
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    reuseport: bool = False  # TCP sockets share their port (more than one worker)

    def roles(self, worker: int) -> dict[str, socket.socket]:
        out = {"http": self.http[worker]}
        if self.tls:
            out["tls"] = self.tls[worker]
        if self.quic:
            out["quic"] = self.quic[worker]
        if self.internal is not None:
            out["internal"] = self.internal
        return out

    def _tcp_groups(self) -> list[tuple[str, list[socket.socket]]]:
        return [(role, group) for role, group in (("http", self.http), ("tls", self.tls))
                if group]

    def release(self, worker: int) -> None:
        """The worker has inherited its TCP sockets: close our copies."""
        for _, group in self._tcp_groups():
            group[worker].close()

    def rebind(self, worker: int) -> None:
        """Fresh TCP sockets for a worker whose sockets were released, bound but not
        listening. Raises OSError when the address cannot be bound any more."""
        for role, group in self._tcp_groups():
            if group[worker].fileno() == -1:
                host, port = self.bound[role]
                group[worker] = _bind_tcp_socket(host, port, self.reuseport)

    def close_held(self) -> None:
        """Close the copies kept for replacements (SIGTERM: there will be none)."""
        for sock in self.quic:
            sock.close()
        if self.internal is not None:
            self.internal.close()


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


def _bind_tcp_socket(host: str, port: int, reuseport: bool) -> socket.socket:
    sock = _tcp_socket(host)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


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
    listeners = Listeners(http=http, reuseport=n > 1)
    listeners.bound["http"] = http[0].getsockname()[:2]
    tls_sock = http[0]
    if config.tls and config.tls_listen_addr is not None:
        listeners.tls = bind_tcp(config.tls_listen_addr, "--tls-listen-addr / TLS_LISTEN_ADDR", n)
        tls_sock = listeners.tls[0]
        listeners.bound["tls"] = tls_sock.getsockname()[:2]
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
    pidfd: int = -1  # readable once the process has exited
    ready_fd: int = -1  # the worker writes one byte here once it serves
    ready: bool = False
    failures: int = 0  # deaths before ready in a row
    restart_at: float = 0.0


def backoff(failures: int) -> float:
    """Delay before restarting a worker that died `failures` times in a row unready."""
    return 0.0 if failures == 0 else min(RESTART_BACKOFF_MAX, 0.5 * 2**failures)


class Supervisor:
    def __init__(self, config: Config, listeners: Listeners, argv: Sequence[str]) -> None:
        self.config = config
        self.listeners = listeners
        self.argv = list(argv)
        self.workers = [_Worker(i) for i in range(config.processes)]
        self.stopping = False
        self._selector = selectors.DefaultSelector()
        # the rate-limit table every worker maps: one limit for the whole server
        self.rate_table = shared_rate_table(config)
        # every worker's metrics and status snapshots, kept while the server lives so that
        # a restarted worker's counts are still summed (gateway/observability/metrics.py)
        self.metrics_dir = metrics_directory(config)

    def _spawn(self, w: _Worker) -> None:
        try:
            self.listeners.rebind(w.index)
        except OSError as exc:
            self._failed(w, f"cannot bind its sockets again: {exc.strerror}")
            return
        roles = self.listeners.roles(w.index)
        fds = ",".join(f"{role}={sock.fileno()}" for role, sock in roles.items())
        ready_r, ready_w = os.pipe()
        table = [] if self.rate_table is None else [self.rate_table.fd]
        cmd = [sys.executable, "-m", "gateway.worker", "--worker-index", str(w.index),
               "--fds", fds, "--ready-fd", str(ready_w),
               *(f"--rate-table-fd={fd}" for fd in table),
               *([f"--metrics-dir={self.metrics_dir}"] if self.metrics_dir else []),
               "--", *self.argv]
        try:
            w.proc = subprocess.Popen(cmd, pass_fds=[*(s.fileno() for s in roles.values()),
                                                     ready_w, *table])
        except OSError as exc:
            os.close(ready_r)
            self._failed(w, f"cannot start: {exc}")
            return
        finally:
            os.close(ready_w)
        self.listeners.release(w.index)
        w.ready = False
        w.ready_fd = ready_r
        os.set_blocking(ready_r, False)
        self._selector.register(ready_r, selectors.EVENT_READ, (self._on_ready, w))
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            w.pidfd = pidfd_open(w.proc.pid)
            self._selector.register(w.pidfd, selectors.EVENT_READ, (self._on_exit, w))
        log.info("worker started", worker=w.index, pid=w.proc.pid)

    def _failed(self, w: _Worker, reason: str) -> None:
        w.failures += 1
        delay = backoff(w.failures)
        w.restart_at = time.monotonic() + delay
        log.error("worker not started", worker=w.index, reason=reason, restart_in=delay)

    def _on_ready(self, w: _Worker) -> None:
        if w.ready_fd < 0:
            return  # closed by _on_exit earlier in the same batch of events
        try:
            data = os.read(w.ready_fd, 16)
        except BlockingIOError:
            return
        if data:
            w.ready = True
            w.failures = 0
        else:  # the worker closed its end (it exits, or wrote already)
            self._close_ready(w)

    def _close_ready(self, w: _Worker) -> None:
        if w.ready_fd >= 0:
            self._selector.unregister(w.ready_fd)
            os.close(w.ready_fd)
            w.ready_fd = -1

    def _on_exit(self, w: _Worker) -> None:
        proc = w.proc
        if proc is None or (code := proc.poll()) is None:
            return
        if w.ready_fd >= 0:
            self._on_ready(w)  # a byte written just before dying still counts
            self._close_ready(w)
        if w.pidfd >= 0:
            self._selector.unregister(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = -1
        w.proc = None
        if self.stopping:
            return
        # served before: a crash, restart now; never ready: a broken set-up, back off
        w.failures = 0 if w.ready else w.failures + 1
        delay = backoff(w.failures)
        w.restart_at = time.monotonic() + delay
        log.error("worker died", worker=w.index, pid=proc.pid, exit_code=code,
                  was_ready=w.ready, restart_in=delay)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("draining", signal=signal.Signals(signum).name,
                 timeout=self.config.drain_timeout_secs)
        # the workers close their listeners now; our copies must not keep them open
        self.listeners.close_held()
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
            waits = [w.restart_at - now for w in self.workers if w.proc is None]
            # a signal does not cut select() short (PEP 475): wake up now and then to see it
            timeout = max(0.0, min([0.2, *waits]))
            for key, _ in self._selector.select(timeout):
                handler, w = key.data
                handler(w)
            for w in self.workers:
                if w.pidfd < 0 and w.proc is not None:
                    self._on_exit(w)  # no pidfd on this system: polled
                if w.proc is None and not self.stopping and time.monotonic() >= w.restart_at:
                    self._spawn(w)
        deadline = time.monotonic() + self.config.drain_timeout_secs + KILL_GRACE_SECS
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
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("stopped")
        return code


def metrics_directory(config: Config) -> Path | None:
    """Where the workers leave their metrics snapshots (in TMPDIR); None without
    INTERNAL_ADDR, where nothing would read them."""
    if config.internal_addr is None:
        return None
    try:
        return Path(tempfile.mkdtemp(prefix="php-gateway-metrics-"))
    except OSError as exc:
        raise SystemExit(f"php-gateway: --internal-addr / INTERNAL_ADDR: cannot make the "
                         f"metrics directory in TMPDIR ({os.environ.get('TMPDIR', '/tmp')}): "
                         f"{exc.strerror or exc} (set TMPDIR to a writable directory)") from None


def shared_rate_table(config: Config) -> RateTable | None:
    """The table of RATE_LIMIT's state, in a memfd the workers inherit; None when off."""
    if not config.rate_limit:
        return None
    try:
        return RateTable.create(config.rate_limit_max_clients)
    except (RuntimeError, OSError) as exc:
        raise SystemExit(f"php-gateway: --rate-limit / RATE_LIMIT: {exc}") from None


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
