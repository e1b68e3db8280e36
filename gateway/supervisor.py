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
from gateway.server.balance import LoadTable

log = structlog.get_logger("gateway.supervisor")

RESTART_BACKOFF_MAX = 30.0
KILL_GRACE_SECS = 5.0  # a worker still alive this long after its drain window is killed


@dataclass(slots=True)
class Listeners:
    """Sockets the workers inherit, by role.

    TCP: one listening socket per address that every worker accepts from, as nginx's
    workers share theirs. With more than one worker, each accepts only while it holds no
    more than SLACK connections above the least-loaded worker (gateway/server/balance.py,
    counts in a shared table): 50 keep-alive clients split 25/25, not 30/20 as by the
    kernel's address hash over SO_REUSEPORT sockets, and a connection queued while a worker
    is dead waits for the others, not for its restart.

    The supervisor keeps its copy of the TCP sockets for replacements while some worker
    lives. When none does, it closes them (`release`): a socket that listens with nobody
    to accept would hold clients in its queue through a back-off of up to 30 s; a closed
    port refuses them at once. The next worker gets fresh sockets (`rebind`), bound but
    not listening until that worker is ready.

    The UDP sockets and the shared internal socket stay here for replacements: closing one
    UDP socket of the group changes the group's size, and the kernel's hash would then send
    the QUIC packets of other workers' connections to the wrong process. SIGTERM closes
    every copy (`close_held`), so that the workers' own close during the drain is final.
    """

    http: list[socket.socket]  # the one socket every worker accepts HTTP from
    tls: list[socket.socket] = field(default_factory=list)  # when TLS has its own address
    # UDP on the TLS listener's port, one SO_REUSEPORT socket per worker: the kernel hashes
    # a client's address to one socket, so each QUIC connection stays in one process.
    quic: list[socket.socket] = field(default_factory=list)
    internal: socket.socket | None = None
    # role -> (host, port) the TCP sockets are bound to, for fresh ones
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)

    def roles(self, worker: int) -> dict[str, socket.socket]:
        out = {"http": self.http[0]}
        if self.tls:
            out["tls"] = self.tls[0]
        if self.quic:
            out["quic"] = self.quic[worker]
        if self.internal is not None:
            out["internal"] = self.internal
        return out

    def _tcp_groups(self) -> list[tuple[str, list[socket.socket]]]:
        return [(role, group) for role, group in (("http", self.http), ("tls", self.tls))
                if group]

    def release(self) -> None:
        """No worker holds the TCP sockets any more: close our copies, so the port refuses
        clients until a worker listens again."""
        for _, group in self._tcp_groups():
            group[0].close()

    def rebind(self) -> None:
        """Fresh TCP sockets where ours were released, bound but not listening. Raises
        OSError when the address cannot be bound any more."""
        for role, group in self._tcp_groups():
            if group[0].fileno() == -1:
                host, port = self.bound[role]
                group[0] = _bind_tcp_socket(host, port)

    def close_held(self) -> None:
        """Close the copies kept for replacements (SIGTERM: there will be none)."""
        for _, group in self._tcp_groups():
            group[0].close()
        for sock in self.quic:
            sock.close()
        if self.internal is not None:
            self.internal.close()


def _tcp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def bind_tcp(addr: HostPort, option: str) -> socket.socket:
    """A listening socket on one address, without SO_REUSEPORT: a port another process
    holds is refused at start-up instead of silently shared. Resolves port 0."""
    sock = _tcp_socket(addr.host)
    try:
        sock.bind((addr.host, addr.port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"php-gateway: {option}: cannot listen on {addr}: {exc.strerror}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _bind_tcp_socket(host: str, port: int) -> socket.socket:
    sock = _tcp_socket(host)
    try:
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
    http = bind_tcp(config.listen_addr, "--listen-addr / LISTEN_ADDR")
    listeners = Listeners(http=[http])
    listeners.bound["http"] = http.getsockname()[:2]
    tls_sock = http
    if config.tls and config.tls_listen_addr is not None:
        tls_sock = bind_tcp(config.tls_listen_addr, "--tls-listen-addr / TLS_LISTEN_ADDR")
        listeners.tls = [tls_sock]
        listeners.bound["tls"] = tls_sock.getsockname()[:2]
    if config.tls and config.http3:
        host, port = tls_sock.getsockname()[:2]
        listeners.quic = [bind_udp(host, port) for _ in range(config.processes)]
    if config.internal_addr is not None:
        listeners.internal = bind_tcp(config.internal_addr, "--internal-addr / INTERNAL_ADDR")
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
        # every worker's connection count, by which they share the TCP sockets evenly
        self.load_table = LoadTable.create(config.processes) if config.processes > 1 else None
        # every worker's metrics and status snapshots, kept while the server lives so that
        # a restarted worker's counts are still summed (gateway/observability/metrics.py)
        self.metrics_dir = metrics_directory(config)

    def _spawn(self, w: _Worker) -> None:
        if self.load_table is not None:
            self.load_table.clear(w.index)  # not accepting until the new process says so
        try:
            self.listeners.rebind()
        except OSError as exc:
            self._failed(w, f"cannot bind its sockets again: {exc.strerror}")
            return
        roles = self.listeners.roles(w.index)
        fds = ",".join(f"{role}={sock.fileno()}" for role, sock in roles.items())
        ready_r, ready_w = os.pipe()
        table = [] if self.rate_table is None else [self.rate_table.fd]
        load = [] if self.load_table is None else [self.load_table.fd]
        cmd = [sys.executable, "-m", "gateway.worker", "--worker-index", str(w.index),
               "--fds", fds, "--ready-fd", str(ready_w),
               *(f"--rate-table-fd={fd}" for fd in table),
               *(f"--load-table-fd={fd}" for fd in load),
               *([f"--metrics-dir={self.metrics_dir}"] if self.metrics_dir else []),
               "--", *self.argv]
        try:
            w.proc = subprocess.Popen(cmd, pass_fds=[*(s.fileno() for s in roles.values()),
                                                     ready_w, *table, *load])
        except OSError as exc:
            os.close(ready_r)
            self._failed(w, f"cannot start: {exc}")
            return
        finally:
            os.close(ready_w)
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
        if self.load_table is not None:
            self.load_table.clear(w.index)  # the others stop leaving connections to it
        if self.stopping:
            return
        if all(other.proc is None for other in self.workers):
            self.listeners.release()  # nobody accepts: refuse clients until a worker listens
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
