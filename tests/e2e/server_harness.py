"""Starts the real php-gateway (supervisor + worker processes, real libphp) on 127.0.0.1
with free ports, waits until it answers, and stops it with SIGTERM afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from protocol_clients import ProtocolClient, make_client

REPO = Path(__file__).resolve().parents[2]
PHP_FIXTURES = REPO / "tests" / "php"
APP_FIXTURES = REPO / "tests" / "e2e" / "docroot"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP (HTTPS and HTTP/3 share it)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    docroot: Path
    log_path: Path
    tls: bool = False
    internal_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, tls: bool,
               timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"php-gateway exited with {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')}")
        # The supervisor binds before workers start, so a worker's log line tells readiness.
        if "worker ready" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"php-gateway did not become ready:\n{log_path.read_text()}")


# One process of two PHP threads unless a test asks for more (its own options come later
# and win): which process the kernel hands a connection to is then never a test's concern.
# sizing=() runs the defaults (PROCESSES=auto, PHP_WORKERS=0).
TEST_SIZING = ("--php-workers", "2", "--processes", "1")


def start_server(tmp: Path, docroot: Path, *args: str, tls: tuple[str, str] | None = None,
                 env: dict[str, str] | None = None, workers_ready: int = 1,
                 internal: bool = False, sizing: Sequence[str] = TEST_SIZING) -> Server:
    port = free_tcp_udp_port()
    log_path = tmp / f"gateway-{port}.log"
    cmd = [sys.executable, "-m", "gateway", "--listen-addr", f"127.0.0.1:{port}",
           "--document-root", str(docroot), *sizing, *args]
    if tls:
        cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    internal_port = None
    if internal:
        internal_port = free_port()
        cmd += ["--internal-addr", f"127.0.0.1:{internal_port}"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env)
    deadline = time.monotonic() + 30
    wait_ready(proc, port, log_path, tls is not None)
    while log_path.read_text(errors="replace").count("worker ready") < workers_ready:
        if time.monotonic() > deadline:
            raise RuntimeError(log_path.read_text())
        time.sleep(0.05)
    return Server(proc, port, docroot, log_path, tls is not None, internal_port, full_env)


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PHP fixtures plus a few static files, as a document root."""
    root = tmp_path_factory.mktemp("docroot")
    for item in PHP_FIXTURES.iterdir():
        shutil.copy2(item, root / item.name)
    if APP_FIXTURES.exists():
        shutil.copytree(APP_FIXTURES, root, dirs_exist_ok=True)
    (root / "static.txt").write_text("plain static text\n")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 400)
    (root / ".env").write_text("SECRET=1\n")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "index.php").write_text("<?php echo 'sub index';")
    return root


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("certs")
    key_path, ca_path = d / "key.pem", d / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    (d / "chain.pem").write_bytes(chain)
    return {"cert": str(d / "chain.pem"), "key": str(key_path), "ca": str(ca_path)}


# Every HTTP/1 test runs on both parsers (HTTP1_PARSER) and every HTTP/2 test on both
# implementations (HTTP2_IMPL), paired so that two servers cover the four.
STACKS = [("httptools", "nghttp2"), ("h11", "h2")]
STACK_IDS = [f"{parser}-{impl}" for parser, impl in STACKS]
H2_IMPLS = ["nghttp2", "h2"]
# the protocols of a module that runs one scenario on each: HTTP/2 once per implementation
PROTOCOLS = ["h1", "h2-nghttp2", "h2-h2", "h3"]


def impl_of(proto: str) -> str:
    """The HTTP2_IMPL a protocol of PROTOCOLS is served by (the default but for "h2-h2")."""
    return "h2" if proto == "h2-h2" else "nghttp2"


class PerImpl:
    """One server configuration on each HTTP/2 implementation, each started when a test first
    asks for it: a module's HTTP/2 cases run on both, its others on the default only."""

    def __init__(self, start: Callable[[str], Server]) -> None:
        self._start = start
        self._servers: dict[str, Server] = {}

    def __getitem__(self, impl: str) -> Server:
        if impl not in self._servers:
            self._servers[impl] = self._start(impl)
        return self._servers[impl]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()


def scripts_per_impl(tmp_path_factory: pytest.TempPathFactory, name: str,
                     scripts: dict[str, str], certs: dict[str, str],
                     env: dict[str, str] | None = None) -> PerImpl:
    """`scripts` (file name: PHP) in a new document root, served over TLS by a PerImpl."""
    root = tmp_path_factory.mktemp(f"{name}-root")
    for file, text in scripts.items():
        (root / file).write_text(text)
    return PerImpl(lambda impl: start_server(
        tmp_path_factory.mktemp(f"{name}-{impl}"), root, "--http2-impl", impl,
        tls=(certs["cert"], certs["key"]), env=env))


@pytest.fixture(params=PROTOCOLS)
async def client(request: pytest.FixtureRequest, servers: PerImpl,
                 certs: dict[str, str]) -> AsyncIterator[ProtocolClient]:
    """A client of each of PROTOCOLS to the module's `servers` fixture (a PerImpl); a module
    with servers of another kind defines its own `client`."""
    c = make_client(request.param, servers[impl_of(request.param)].port, certs["ca"])
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="session", params=STACKS, ids=STACK_IDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           docroot: Path) -> Iterator[Server]:
    """Plain HTTP, traditional routing; every test using it runs on both HTTP/1 parsers and
    (h2c) both HTTP/2 implementations."""
    parser, impl = request.param
    s = start_server(tmp_path_factory.mktemp("srv"), docroot, "--http1-parser", parser,
                     "--http2-impl", impl)
    yield s
    s.stop()


@pytest.fixture(scope="session", params=H2_IMPLS)
def tls_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               docroot: Path, certs: dict[str, str]) -> Iterator[Server]:
    """HTTPS with HTTP/2 by ALPN, on each HTTP/2 implementation."""
    s = start_server(tmp_path_factory.mktemp("tls"), docroot, "--http2-impl", request.param,
                     tls=(certs["cert"], certs["key"]))
    yield s
    s.stop()


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (scripts/install-system-deps.sh installs it)")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


@contextlib.contextmanager
def raw_connection(port: int) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        yield s
    finally:
        s.close()
