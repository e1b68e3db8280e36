"""Slow clients cost a connection, never a PHP thread (issue 9, points 1 and 2), on the real
server with two PHP threads, loopback only, every wait bounded:

- request buffering: clients that dribble their bodies do not hold the threads, so another
  request is answered at once; PHP sees the whole body (and its real length) when it runs;
- response buffering: a client that never reads does not hold a thread; SEND_TIMEOUT_SECS
  closes its connection, with a warning in the log;
- with the buffering options off, the old streaming behaviour is kept on purpose.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from server_harness import Server, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, docroot: Path) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("slow"), docroot, "--send-timeout-secs", "2",
                     "--body-timeout-secs", "20")
    yield s
    s.stop()


def exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Status and body (chunked or not) of one request on a new connection."""
    conn = h11.Connection(h11.CLIENT)
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, body


def get(port: int, path: str) -> tuple[float, int, bytes]:
    started = time.monotonic()
    status, body = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return time.monotonic() - started, status, body


class Dribbler(threading.Thread):
    """POSTs `size` bytes a byte every `gap` seconds, until told to finish the rest at once."""

    def __init__(self, port: int, size: int, gap: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.size, self.gap = size, gap
        self.finish = threading.Event()
        self.reply = b""  # the response body

    def run(self) -> None:
        sock = self.sock
        sock.sendall(b"POST /echo_input.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % self.size)
        sent = 0
        while sent < self.size and not self.finish.wait(self.gap):
            sock.sendall(b"x")
            sent += 1
        sock.sendall(b"x" * (self.size - sent))
        conn = h11.Connection(h11.CLIENT)  # it reads a response once it has seen a request
        conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"),
                                                                   ("content-length", "0")]))
        conn.send(h11.EndOfMessage())
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Data):
                self.reply += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        sock.close()


def test_slow_request_bodies_do_not_hold_php_threads(server: Server) -> None:
    dribblers = [Dribbler(server.port, 100_000, 0.2) for _ in range(3)]  # more than threads
    for d in dribblers:
        d.start()
    time.sleep(1.0)  # every dribbler is well into its body
    elapsed, status, body = get(server.port, "/hello.php")
    assert (status, body) == (200, b"Hello, World!")
    assert elapsed < 2.0, f"a PHP request waited {elapsed:.1f}s behind slow uploads"
    for d in dribblers:
        d.finish.set()
    for d in dribblers:
        d.join(20)
        assert json.loads(d.reply) == {"length": 100_000, "method": "POST",
                        "sha256": hashlib.sha256(b"x" * 100_000).hexdigest()}


def test_chunked_upload_reaches_php_with_its_length(server: Server) -> None:
    status, body = exchange(
        server.port, b"POST /server.php HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert status == 200
    seen = json.loads(body)["server"]
    assert seen["CONTENT_LENGTH"] == "11"  # as nginx passes it on after buffering


def test_a_client_that_never_reads_holds_no_thread_and_is_closed(server: Server) -> None:
    stalled = []
    for _ in range(3):  # more than the PHP threads
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big.php?kb=32768 HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(sock)
    time.sleep(1.0)
    elapsed, status, body = get(server.port, "/hello.php")
    assert (status, body) == (200, b"Hello, World!")
    assert elapsed < 2.0, f"a PHP request waited {elapsed:.1f}s behind clients that do not read"
    # SEND_TIMEOUT_SECS=2: the server gives up on them and says so
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.logs().count('"send timeout') < 3:
        time.sleep(0.1)
    assert server.logs().count('"send timeout') >= 3
    for sock in stalled:
        sock.settimeout(10)
        total = 0
        try:
            while chunk := sock.recv(1 << 20):
                total += len(chunk)
        except ConnectionResetError:
            pass
        assert total < 32768 * 1024  # cut off, not completed
        sock.close()


def test_without_request_buffering_slow_bodies_hold_the_threads(tmp_path: Path,
                                                               docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--request-buffering", "off")
    try:
        dribblers = [Dribbler(s.port, 1000, 0.2) for _ in range(2)]  # one per thread
        for d in dribblers:
            d.start()
        time.sleep(1.0)
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(b"GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.settimeout(1.5)
            with pytest.raises(TimeoutError):
                sock.recv(65536)  # both threads are reading bodies: this request waits
        for d in dribblers:
            d.finish.set()
        for d in dribblers:
            d.join(20)
            assert json.loads(d.reply)["length"] == 1000
    finally:
        s.stop()
