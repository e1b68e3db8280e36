"""Crashes, drains and framing on the real server (issue 9, points 4 to 6), loopback only:

- a worker that crashes after serving is restarted at once; one that dies before it is
  ready backs off; while a worker is dead or starting, no connection waits on its socket;
- SIGTERM closes every listening socket, TCP and UDP, at once: new clients are refused,
  requests in flight finish, and the process exits within DRAIN_TIMEOUT_SECS (plus a
  second of grace) whatever the clients and scripts do;
- chunk sizes are judged against MAX_BODY_SIZE at once, Host must be a host[:port], and
  SERVER_NAME comes from the SERVER_NAME option.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from h3_client import h3_client
from server_harness import REPO, Server, curl, start_server

pytestmark = pytest.mark.e2e

E2E = Path(__file__).resolve().parent


# ---------------------------------------------------------------- helpers


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def records(s: Server, event: str) -> list[dict[str, Any]]:
    """The server's JSON log records whose event is `event`."""
    out = []
    for line in s.logs().splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                out.append(record)
    return out


def wait_until(check: Callable[[], bool], timeout: float, what: str, s: Server) -> float:
    """Seconds it took until check() held."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what} within {timeout} s:\n{s.logs()}"
        time.sleep(0.01)
    return time.monotonic() - start


def http(port: int, raw: bytes, timeout: float = 5,
         tls: ssl.SSLContext | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send `raw` on a fresh connection, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as plain:
        sock = tls.wrap_socket(plain, server_hostname="127.0.0.1") if tls else plain
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2 :]


def get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5) -> tuple[int, bytes]:
    status, _, body = http(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                                 f"Connection: close\r\n\r\n".encode(), timeout)
    return status, body


def udp_refused(port: int) -> bool:
    """Whether a datagram of QUIC Initial size to `port` is refused (ICMP port unreachable)
    rather than taken by a listening socket (then nothing comes back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("127.0.0.1", port))
        probe.settimeout(1)
        probe.send(b"\xc0" + os.urandom(1199))
        try:
            probe.recv(2048)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
    return False


# ---------------------------------------------------------------- point 4: crashes


def test_worker_that_served_is_restarted_at_once(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2)
    try:
        assert get(s.port, "/hello.php") == (200, b"Hello, World!")
        victim = children(s.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        took = wait_until(lambda: len(records(s, "worker started")) == 3, 5,
                          "a replacement started", s)
        # nginx respawns at once; the old supervisor waited 1 s for a worker younger than 5 s
        assert took < 0.5, took
        died = records(s, "worker died")[0]
        assert (died["pid"], died["was_ready"], died["restart_in"]) == (victim, True, 0.0)
        wait_until(lambda: len(records(s, "worker ready")) == 3, 30, "the replacement ready", s)
        assert get(s.port, "/hello.php") == (200, b"Hello, World!")
    finally:
        s.stop()


def test_worker_dying_before_ready_backs_off(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot)
    try:
        os.kill(children(s.proc.pid)[0], signal.SIGKILL)  # served: restarted at once
        wait_until(lambda: len(records(s, "worker started")) == 2, 5, "a replacement", s)
        starting = records(s, "worker started")[1]["pid"]
        os.kill(starting, signal.SIGKILL)  # before it is ready: as a broken set-up dies
        killed = time.monotonic()
        wait_until(lambda: len(records(s, "worker started")) == 3, 10, "a second replacement", s)
        waited = time.monotonic() - killed
        died = records(s, "worker died")[1]
        assert (died["pid"], died["was_ready"], died["restart_in"]) == (starting, False, 1.0)
        assert waited >= 0.9, waited
        wait_until(lambda: len(records(s, "worker ready")) == 2, 30, "the replacement ready", s)
        assert get(s.port, "/hello.php") == (200, b"Hello, World!")
    finally:
        s.stop()


def test_no_connection_waits_on_a_dead_or_starting_worker(tmp_path: Path,
                                                          docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2)
    try:
        first, survivor = children(s.proc.pid)
        os.kill(first, signal.SIGKILL)
        time.sleep(0.05)  # the kernel has closed the dead process's sockets

        def timed_get(_: int) -> tuple[float, int, bytes]:
            start = time.monotonic()
            status, body = get(s.port, "/pid.php", timeout=10)
            return time.monotonic() - start, status, body

        # fresh connections while the replacement starts: the old supervisor's copy of the
        # dead socket kept taking its share of them until the restart (back-off + PHP start)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(timed_get, range(24)))
        assert all(status == 200 for _, status, _ in results), results
        assert max(t for t, _, _ in results) < 1.0, results
        replacement = records(s, "worker started")[-1]["pid"]
        assert {int(body) for _, _, body in results} <= {survivor, replacement}
        # the replacement's own socket listens once it is ready, and gets its share
        wait_until(lambda: len(records(s, "worker ready")) == 3, 30, "the replacement ready", s)
        pids = {int(get(s.port, "/pid.php")[1]) for _ in range(40)}
        assert pids == {survivor, replacement}
    finally:
        s.stop()


# ---------------------------------------------------------------- point 5: drain


def test_sigterm_refuses_new_tcp_clients_and_finishes_in_flight(tmp_path: Path,
                                                               docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2, internal=True)
    assert s.internal_port is not None
    try:
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(http, s.port, b"GET /sleep.php?s=2 HTTP/1.1\r\n"
                                                  b"Host: x\r\n\r\n", 15)
            time.sleep(0.5)  # the script runs
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # every process has the signal
            for _ in range(20):
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
            # the internal port stays up meanwhile, so probes read "not ready"
            assert get(s.internal_port, "/ready")[0] == 503
            status, headers, body = in_flight.result(15)
        assert (status, body) == (200, b"slept 2")
        assert headers[b"connection"] == b"close"
        assert s.proc.wait(15) == 0
    finally:
        s.stop()


def test_sigterm_refuses_new_quic_clients_and_finishes_in_flight_h3(
        tmp_path: Path, docroot: Path, certs: dict[str, str]) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2,
                     tls=(certs["cert"], certs["key"]))
    assert udp_refused(s.port) is False  # a listening QUIC socket takes the datagram

    async def run() -> tuple[int, bytes, bool, bool]:
        loop = asyncio.get_running_loop()
        async with h3_client(s.port, certs["ca"]) as client:
            _, pending = client.start_request("GET", "/sleep.php?s=2")
            await asyncio.sleep(0.5)
            s.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            refused = await loop.run_in_executor(None, udp_refused, s.port)
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
                tcp_refused = False
            except ConnectionRefusedError:
                tcp_refused = True
            reply = await asyncio.wait_for(pending, 15)
            return reply.status, reply.body, refused, tcp_refused

    try:
        status, body, refused, tcp_refused = asyncio.run(run())
        assert refused, "a new QUIC client reached an open UDP socket after SIGTERM"
        assert tcp_refused
        assert (status, body) == (200, b"slept 2")  # went on over the handed-over socket
        assert s.proc.wait(15) == 0
    finally:
        s.stop()


async def test_quic_drain_closes_the_listener_and_hands_connections_over(
        certs: dict[str, str]) -> None:
    """In process, without PHP: the connection in flight moves to a socket of its own, the
    listening socket closes at once, and a new client is refused by the kernel."""
    from h3_app import H3TestApp

    from gateway.server.quic import start_quic_server

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as the supervisor binds it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await start_quic_server(sock, H3TestApp(), certfile=certs["cert"],
                                     keyfile=certs["key"])
    loop = asyncio.get_running_loop()
    try:
        async with h3_client(port, certs["ca"]) as client:
            _, pending = client.start_request("GET", "/slow/20")  # 1 s of 50 ms chunks
            await asyncio.sleep(0.2)
            drain = asyncio.ensure_future(server.drain(10))
            await asyncio.sleep(0.1)
            assert await loop.run_in_executor(None, udp_refused, port)
            reply = await asyncio.wait_for(pending, 10)
            assert (reply.status, len(reply.body)) == (200, 20 * 1000)
            await asyncio.wait_for(drain, 10)
    finally:
        server.close()


VANISHING_H3_CLIENT = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {e2e!r})
    from h3_client import h3_client

    async def main():
        async with h3_client({port}, {ca!r}) as client:
            client.start_request("GET", "/sleep.php?s=60")
            print("sent", flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
""")


def test_drain_ends_in_time_whatever_clients_and_scripts_do(
        tmp_path: Path, docroot: Path, certs: dict[str, str]) -> None:
    s = start_server(tmp_path, docroot, tls=(certs["cert"], certs["key"]),
                     env={"DRAIN_TIMEOUT_SECS": "1"})
    script = VANISHING_H3_CLIENT.format(e2e=str(E2E), port=s.port, ca=certs["ca"])
    vanishing = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                 cwd=REPO)
    socks = []
    try:
        assert vanishing.stdout is not None and vanishing.stdout.readline() == b"sent\n"
        vanishing.kill()  # an HTTP/3 client gone without a word, its request still running
        vanishing.wait()
        context = ssl.create_default_context(cafile=certs["ca"])
        for raw in (b"GET /sleep.php?s=60 HTTP/1.1\r\nHost: x\r\n\r\n",  # a script that sleeps
                    b"GET /big.php?kb=65536 HTTP/1.1\r\nHost: x\r\n\r\n"):  # a client not reading
            sock = context.wrap_socket(socket.create_connection(("127.0.0.1", s.port)),
                                       server_hostname="127.0.0.1")
            sock.sendall(raw)
            socks.append(sock)
        time.sleep(1)  # everything is in flight
        start = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(15)
        took = time.monotonic() - start
        # DRAIN_TIMEOUT_SECS + half a second of grace for PHP threads, then the pool's stop
        # interrupts the sleeping scripts as a timeout would (+ slack); the old worker waited
        # for them until the supervisor killed it at drain + 5 s
        assert took < 3.5, (took, s.logs())
        assert "PHP threads still running 0.5 s into the stop: interrupted" in s.logs()
    finally:
        for sock in socks:
            sock.close()
        if vanishing.poll() is None:
            vanishing.kill()
        s.stop()


# ---------------------------------------------------------------- point 6: framing


@pytest.fixture(scope="module", params=["httptools", "h11"])
def strict(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           docroot: Path) -> Any:
    s = start_server(tmp_path_factory.mktemp("strict"), docroot, "--http1-parser",
                     request.param, "--max-body-size", "1K")
    yield s
    s.stop()


CHUNKED = b"POST /echo_input.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("size_line", "status"), [
    (b"401\r\n", 413),  # 1025 bytes announced, MAX_BODY_SIZE 1K: refused before any arrives
    (b"FFFFFFFFFFFFFFFF\r\n", 400),  # beyond a 64-bit offset, as nginx counts
    (b"F" * 20 + b"\r\n", 400),
])
def test_chunk_size_is_judged_when_announced(strict: Server, size_line: bytes,
                                             status: int) -> None:
    # the body never comes: the old server waited BODY_TIMEOUT_SECS (60 s) for it
    got, headers, _ = http(strict.port, CHUNKED + size_line, timeout=3)
    assert got == status
    assert headers[b"connection"] == b"close"


def test_chunked_body_within_the_limit_reaches_php(strict: Server) -> None:
    body = b"1f4\r\n" + b"a" * 500 + b"\r\n1f4\r\n" + b"b" * 500 + b"\r\n0\r\n\r\n"
    head = CHUNKED.replace(b"Host: x", b"Host: x\r\nConnection: close")
    status, _, got = http(strict.port, head + body)
    assert status == 200
    assert json.loads(got)["length"] == 1000  # exactly MAX_BODY_SIZE: taken whole


@pytest.mark.parametrize("host", [b"a b", b"exa/mple", b"user@example.com", b"x:port",
                                  b"a..b", b"[::zz]"])
def test_invalid_host_is_400(strict: Server, host: bytes) -> None:
    status, headers, _ = http(strict.port, b"GET /server.php HTTP/1.1\r\nHost: " + host +
                              b"\r\n\r\n", timeout=3)
    assert status == 400
    assert headers[b"connection"] == b"close"


def test_valid_host_becomes_server_name(strict: Server) -> None:
    status, body = get(strict.port, "/server.php", host="www.example.test:8080")
    assert status == 200
    server = json.loads(body)["server"]
    assert server["SERVER_NAME"] == "www.example.test"
    assert server["HTTP_HOST"] == "www.example.test:8080"


def test_server_name_option_sets_server_name(tmp_path: Path, docroot: Path,
                                             certs: dict[str, str]) -> None:
    s = start_server(tmp_path, docroot, "--server-name", "app.example",
                     tls=(certs["cert"], certs["key"]))
    try:
        context = ssl.create_default_context(cafile=certs["ca"])
        status, _, body = http(s.port, b"GET /server.php HTTP/1.1\r\nHost: other.test\r\n"
                                       b"Connection: close\r\n\r\n", tls=context)
        assert status == 200
        server = json.loads(body)["server"]
        assert (server["SERVER_NAME"], server["HTTP_HOST"]) == ("app.example", "other.test")

        async def over_h3() -> dict[str, str]:
            async with h3_client(s.port, certs["ca"]) as client:
                r = await client.request("GET", "/server.php", authority="other.test")
                assert r.status == 200
                return dict(json.loads(r.body)["server"])

        server = asyncio.run(over_h3())
        assert (server["SERVER_NAME"], server["HTTP_HOST"]) == ("app.example", "other.test")
    finally:
        s.stop()


def test_invalid_authority_is_400_over_h2_and_h3(tls_server: Server,
                                                  certs: dict[str, str]) -> None:
    r = curl("-s", "--http2", "--cacert", certs["ca"], "-H", "Host: a b", "-o", "/dev/null",
             "-w", "%{http_version} %{http_code}", f"{tls_server.url}/server.php")
    assert r.stdout == b"2 400", r

    async def over_h3() -> tuple[int, int]:
        async with h3_client(tls_server.port, certs["ca"]) as client:
            bad = await client.request("GET", "/server.php", authority="exa/mple")
            good = await client.request("GET", "/hello.php", authority="example.test:443")
            return bad.status, good.status

    assert asyncio.run(over_h3()) == (400, 200)
