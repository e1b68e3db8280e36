"""HTTP/2 floods, stalled clients and the connection limit on the real server (issue 9,
point 3), loopback only, every loop bounded in count and time."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame
from server_harness import H2_IMPLS, Server, curl, start_server

pytestmark = pytest.mark.e2e

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
       (b":path", b"/hello.php")]


def h2c(port: int, rcvbuf: int | None = None) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def established(port: int) -> int:
    """Server-side sockets of `port` still ESTABLISHED."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


@pytest.fixture(scope="module", params=H2_IMPLS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           docroot: Path) -> Server:
    s = start_server(tmp_path_factory.mktemp("floods"), docroot, "--max-connections", "20",
                     "--send-timeout-secs", "1", "--idle-timeout-secs", "1",
                     "--http2-impl", request.param)
    yield s  # type: ignore[misc]
    s.stop()


@pytest.mark.parametrize("kind", ["ping", "settings", "window-update", "empty-data"])
def test_control_frame_flood_is_cut_off(server: Server, kind: str) -> None:
    sock, conn = h2c(server.port)
    if kind == "empty-data":
        conn.send_headers(1, [*GET[:3], (b":path", b"/echo_input.php")], end_stream=False)
    goaway: h2.events.ConnectionTerminated | None = None
    started = time.monotonic()
    sent = 0
    sock.settimeout(0.2)
    while goaway is None and sent < 20_000 and time.monotonic() - started < 10:
        for _ in range(100):
            if kind == "ping":
                conn.ping(b"%08d" % (sent % 10**8))
            elif kind == "settings":
                conn.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})
            elif kind == "window-update":
                conn.increment_flow_control_window(1)
            else:
                conn.send_data(1, b"")
            sent += 1
        sock.sendall(conn.data_to_send())
        try:  # read what came back before sending more, as a client that reads would
            while goaway is None and (data := sock.recv(1 << 16)):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        goaway = event
        except TimeoutError:
            pass
    sock.close()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert sent <= 2000  # cut off near the allowance, not after the whole flood
    assert '"http2 flood' in server.logs()
    # the others are served
    r = curl("-s", "--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/hello.php")
    assert r.stdout == b"Hello, World!"


def _goaway(sock: socket.socket, conn: h2.connection.H2Connection,
            limit: float = 10) -> h2.events.ConnectionTerminated | None:
    """Read until the server's GOAWAY (or the connection ends, or `limit` seconds pass)."""
    deadline = time.monotonic() + limit
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return None
        if not data:
            return None
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
    return None


@pytest.mark.parametrize("attack", ["continuation", "hpack-bomb"])
def test_header_block_attacks_close_the_connection(server: Server, attack: str) -> None:
    """CVE-2024-28182 (a header block in endless CONTINUATION frames) and an HPACK bomb (a
    3 KB field indexed once, then referenced 40 times: 120 KB decoded from ~50 bytes)."""
    sock, conn = h2c(server.port)
    if attack == "continuation":
        block = Encoder().encode(GET)
        wire = HeadersFrame(1, data=block[:2], flags=["END_STREAM"]).serialize()
        wire += ContinuationFrame(1, data=b"").serialize() * 500
    else:
        conn.send_headers(1, [*GET, (b"x-big", b"v" * 3000)], end_stream=True)
        conn.send_headers(3, [*GET, *[(b"x-big", b"v" * 3000)] * 40], end_stream=True)
        wire = conn.data_to_send()
    with contextlib.suppress(OSError):  # the server may close before it all arrived
        sock.sendall(wire)
    goaway = _goaway(sock, conn)
    sock.close()
    assert goaway is not None and goaway.error_code != 0
    r = curl("-s", "--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/hello.php")
    assert r.stdout == b"Hello, World!"


def test_connection_limit_refuses_at_once_and_recovers(server: Server) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        # closed without an answer (or reset, as the request it sent was never read)
        with contextlib.suppress(ConnectionResetError):
            assert extra.recv(100) == b""
        assert time.monotonic() - started < 1.0
        extra.close()
        assert "connection limit reached" in server.logs()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    r = curl("-s", f"http://127.0.0.1:{server.port}/hello.php")
    assert r.stdout == b"Hello, World!"


def test_a_peer_that_never_reads_loses_its_connection(server: Server) -> None:
    """Send timeout resets the stream; the idle close cannot flush to a peer that reads
    nothing, so the socket is aborted rather than kept ESTABLISHED."""
    before = established(server.port)
    sock, conn = h2c(server.port, rcvbuf=4096)
    conn.send_headers(1, [*GET[:3], (b":path", b"/big.php?kb=4096")], end_stream=True)
    for _ in range(2000):  # and PINGs whose answers pile up unread
        conn.ping(b"unread!!")
    sock.sendall(conn.data_to_send())
    deadline = time.monotonic() + 15
    while established(server.port) > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert established(server.port) <= before
    sock.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("impl", H2_IMPLS)
def test_stalled_streams_hold_neither_memory_nor_php_threads(tmp_path: Path, docroot: Path,
                                                           impl: str) -> None:
    """5 connections x 100 streams of a 1 MiB PHP page, with a zero flow-control window:
    500 MiB of pages wait in budgeted memory and temp files; PHP's threads are free."""
    s = start_server(tmp_path, docroot, "--queue-capacity", "2000", "--buffer-memory", "16M",
                     "--http2-impl", impl)
    clients: list[tuple[socket.socket, h2.connection.H2Connection]] = []
    try:
        worker = int(subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True,
                                    text=True).stdout.split()[0])
        curl("-s", f"http://127.0.0.1:{s.port}/big.php?kb=1024")  # warm up
        before = _rss_kib(worker)
        heads = 0
        for _ in range(5):
            sock, conn = h2c(s.port)
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            for i in range(100):
                conn.send_headers(1 + 2 * i, [*GET[:3], (b":path", b"/big.php?kb=1024")],
                                  end_stream=True)
            sock.sendall(conn.data_to_send())
            clients.append((sock, conn))
        deadline = time.monotonic() + 60
        while heads < 500 and time.monotonic() < deadline:
            for sock, conn in clients:
                sock.settimeout(0.05)
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                heads += sum(isinstance(e, h2.events.ResponseReceived)
                             for e in conn.receive_data(data))
                sock.sendall(conn.data_to_send())
        assert heads == 500  # every page was made: PHP is done with all of them
        grown = (_rss_kib(worker) - before) // 1024
        print(f"worker RSS grew by {grown} MiB")
        assert grown < 200, f"worker RSS grew by {grown} MiB for 500 MiB of stalled pages"
        started = time.monotonic()
        r = curl("-s", f"http://127.0.0.1:{s.port}/hello.php")
        assert r.stdout == b"Hello, World!" and time.monotonic() - started < 2
    finally:
        for sock, _ in clients:
            sock.close()
        s.stop()
