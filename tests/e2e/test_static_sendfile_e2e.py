"""Static files over plain HTTP/1.1 go by sendfile(2) (gateway/pipeline/file_body.py,
gateway/server/h1_connection.py): against the real server and real clients, the bytes,
headers, HEAD, ranges, 304, a client that reads slowly (what the kernel does not take at
once goes on in order through the transport), one that leaves mid-file, a file changed on
disk between requests, compression, the access log's byte count, and TLS / HTTP/2 / HTTP/3
unchanged. An in-process server shows sendfile is what carries the body, and where not."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from observability_helpers import records, wait_for
from protocol_clients import make_client
from server_harness import Server, curl, start_server
from transport_app import ServerThread

from gateway.pipeline.context import RequestContext
from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import StaticFiles
from gateway.server.settings import ServerSettings
from gateway.server.tls import create_ssl_context

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MID = os.urandom(200 * 1024)  # held in the memory cache: the sendfile path
BIG = os.urandom(8 * 1024 * 1024)  # larger than any socket buffer: streamed from disk
TEXT = b"".join(b"line %d of a compressible static text file\n" % i for i in range(2500))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sendfile-root")
    (root / "mid.bin").write_bytes(MID)
    (root / "big.bin").write_bytes(BIG)
    (root / "page.txt").write_bytes(TEXT)
    (root / "small.bin").write_bytes(b"tiny file\n")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("sendfile-srv"), root, "--send-timeout-secs", "5",
                     env={"ACCESS_LOG": "1"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, root: Path,
               certs: dict[str, str]) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("sendfile-tls"), root,
                     tls=(certs["cert"], certs["key"]))
    yield s
    s.stop()


# -- a raw HTTP/1.1 client that reads at its own pace --------------------------------------


def read_response(sock: socket.socket, pending: bytes = b"", pace: float = 0.0,
                  chunk: int = 65536) -> tuple[bytes, dict[bytes, bytes], bytes, bytes]:
    """(status line, headers, body, bytes already read past it) of one response with a
    content-length, read `chunk` bytes at a time with `pace` seconds between reads."""
    data = pending
    while b"\r\n\r\n" not in data:
        more = sock.recv(chunk)
        assert more, f"connection closed inside the head: {data!r}"
        data += more
    head, _, data = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines)}
    length = int(headers[b"content-length"])
    parts = [data]
    have = len(data)
    while have < length:
        if pace:
            time.sleep(pace)
        more = sock.recv(chunk)
        assert more, f"connection closed after {have} of {length} body bytes"
        parts.append(more)
        have += len(more)
    body = b"".join(parts)
    return status, headers, body[:length], body[length:]


def small_buffer_connection(port: int, rcvbuf: int = 8192) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode()


# -- the real server ------------------------------------------------------------------------


def test_get_head_and_headers(server: Server) -> None:
    r = httpx.get(f"{server.url}/mid.bin")
    assert r.status_code == 200 and r.content == MID
    assert r.headers["content-length"] == str(len(MID))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["accept-ranges"] == "bytes"
    etag = r.headers["etag"]
    head = httpx.head(f"{server.url}/mid.bin")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(MID)) and head.headers["etag"] == etag


def test_ranges_and_conditionals(server: Server) -> None:
    url = f"{server.url}/mid.bin"
    r = httpx.get(url, headers={"range": "bytes=1000-70999"})
    assert r.status_code == 206 and r.content == MID[1000:71000]
    assert r.headers["content-range"] == f"bytes 1000-70999/{len(MID)}"
    r = httpx.get(url, headers={"range": "bytes=-5000"})
    assert r.status_code == 206 and r.content == MID[-5000:]
    r = httpx.get(url, headers={"range": f"bytes={len(MID)}-"})
    assert r.status_code == 416 and r.content == b""
    etag = httpx.get(url).headers["etag"]
    r = httpx.get(url, headers={"if-none-match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = httpx.get(url, headers={"range": "bytes=0-99", "if-range": '"stale"'})
    assert r.status_code == 200 and r.content == MID


def test_curl_keep_alive_several_files(server: Server) -> None:
    out = curl("--http1.1", f"{server.url}/mid.bin", f"{server.url}/small.bin",
               f"{server.url}/mid.bin", f"{server.url}/big.bin")
    assert out.returncode == 0, out.stderr
    assert out.stdout == MID + b"tiny file\n" + MID + BIG


def test_pipelined_requests_come_back_in_order(server: Server) -> None:
    with small_buffer_connection(server.port, 16384) as sock:
        sock.sendall(get("/mid.bin") + get("/small.bin") + get("/mid.bin"))
        rest = b""
        bodies = []
        for _ in range(3):
            status, _, body, rest = read_response(sock, rest, pace=0.001, chunk=8192)
            assert status == b"HTTP/1.1 200 OK"
            bodies.append(body)
    assert bodies == [MID, b"tiny file\n", MID]


def test_a_slow_reader_gets_every_byte_in_order(server: Server) -> None:
    """The kernel takes part of the file at once; the rest follows through the transport,
    and the next response on the connection comes after it."""
    with small_buffer_connection(server.port) as sock:
        for path, expected in (("/mid.bin", MID), ("/big.bin", BIG), ("/mid.bin", MID)):
            sock.sendall(get(path))
            pace = 0.002 if expected is MID else 0.0002
            status, headers, body, rest = read_response(sock, pace=pace, chunk=8192)
            assert headers[b"content-length"] == b"%d" % len(expected)
            assert status == b"HTTP/1.1 200 OK" and rest == b""
            assert len(body) == len(expected) and body == expected


def test_a_client_leaving_mid_file_leaves_the_server_serving(server: Server) -> None:
    for path in ("/mid.bin", "/big.bin"):
        sock = small_buffer_connection(server.port, 4096)
        sock.sendall(get(path))
        assert sock.recv(4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, with most of the file still to send
    time.sleep(0.3)
    r = httpx.get(f"{server.url}/mid.bin")
    assert r.status_code == 200 and r.content == MID


def test_access_log_counts_the_bytes_sent(server: Server) -> None:
    httpx.get(f"{server.url}/mid.bin?log=whole")
    httpx.get(f"{server.url}/mid.bin?log=range", headers={"range": "bytes=10-19"})
    httpx.head(f"{server.url}/mid.bin?log=head")

    def logged() -> dict[str, int]:
        out = {}
        for record in records(server):
            uri = str(record.get("uri", ""))
            if "log=" in uri and "bytes_sent" in record:
                out[uri.rpartition("log=")[2]] = record["bytes_sent"]
        return out if len(out) == 3 else {}

    assert wait_for(logged, what="three access lines") == {
        "whole": len(MID), "range": 10, "head": 0}


def test_file_changed_on_disk_is_sent_as_it_is_now(server: Server, root: Path) -> None:
    path = root / "changing.bin"
    first = os.urandom(150 * 1024)
    path.write_bytes(first)
    r = httpx.get(f"{server.url}/changing.bin")
    assert r.content == first
    etag = r.headers["etag"]
    # rewritten in place, same size, a newer mtime
    second = os.urandom(150 * 1024)
    with open(path, "r+b") as f:
        f.write(second)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    time.sleep(1.2)  # the router's stat cache (1 s)
    r = httpx.get(f"{server.url}/changing.bin")
    assert r.content == second and r.headers["etag"] != etag
    # replaced by a rename (an atomic deploy), another size
    third = os.urandom(90 * 1024)
    (root / "changing.tmp").write_bytes(third)
    os.replace(root / "changing.tmp", path)
    time.sleep(1.2)
    r = httpx.get(f"{server.url}/changing.bin")
    assert r.content == third and r.headers["content-length"] == str(len(third))
    # rewritten in place while the router still has the old stat: the bytes match the head
    fourth = os.urandom(90 * 1024)
    with open(path, "r+b") as f:
        f.write(fourth)
    r = httpx.get(f"{server.url}/changing.bin")
    assert r.content in (third, fourth)
    assert len(r.content) == int(r.headers["content-length"])


def test_compression_still_applies(server: Server) -> None:
    plain = httpx.get(f"{server.url}/page.txt", headers={"accept-encoding": "identity"})
    assert plain.content == TEXT and "content-encoding" not in plain.headers
    out = curl("--http1.1", "-H", "accept-encoding: gzip", "-D", "-", "-o", "-",
               f"{server.url}/page.txt")
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert gzip.decompress(body) == TEXT


def test_tls_http2_and_http3_are_unchanged(tls_server: Server, certs: dict[str, str]) -> None:
    async def go() -> None:
        for proto in ("h1", "h2", "h3"):
            client = make_client(proto, tls_server.port, certs["ca"])
            try:
                for path, expected in (("/mid.bin", MID), ("/big.bin", BIG)):
                    reply = await client.request("GET", path)
                    assert reply.status == 200, proto
                    assert reply.body == expected, proto
                reply = await client.request("GET", "/mid.bin", [(b"range", b"bytes=5-9")])
                assert reply.status == 206 and reply.body == MID[5:10], proto
            finally:
                await client.close()

    asyncio.run(go())


# -- in process: sendfile carries the body on plain TCP, and only there ---------------------


class StaticApp:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = StaticFiles(60, max_cached_file=len(BIG), memory_cache_bytes=4 * len(BIG))

    async def __call__(self, ctx: RequestContext) -> None:
        path = self.root / ctx.request.target.decode().lstrip("/")
        st = path.stat()
        await self.files.serve(ctx, StaticFile(path, st.st_size, st.st_mtime_ns))


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(asked, taken) of every os.sendfile call in this process."""
    calls: list[tuple[int, int]] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int, **kw: Any) -> int:
        try:
            taken = real(out_fd, in_fd, offset, count, **kw)
        except BlockingIOError:
            calls.append((count, 0))
            raise
        calls.append((count, taken))
        return taken

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def test_plain_tcp_uses_sendfile(root: Path, sendfile_calls: list[tuple[int, int]]) -> None:
    server = ServerThread(StaticApp(root), ServerSettings()).start()  # type: ignore[arg-type]
    try:
        port = server.port
        r = httpx.get(f"http://127.0.0.1:{port}/mid.bin")
        assert r.content == MID
        assert sum(taken for _, taken in sendfile_calls) == len(MID)
        sendfile_calls.clear()
        r = httpx.get(f"http://127.0.0.1:{port}/small.bin")
        assert r.content == b"tiny file\n" and not sendfile_calls  # one write is cheaper
        # 8 MiB, held in memory here, to a slow reader: the kernel takes part, the transport
        # the rest, and the response after it on the connection comes after it
        with small_buffer_connection(port, 4096) as sock:
            sock.sendall(get("/big.bin") + get("/mid.bin"))
            _, _, first, rest = read_response(sock, pace=0.0002, chunk=16384)
            _, _, second, rest = read_response(sock, rest, chunk=4096)
        assert first == BIG and second == MID and rest == b""
        assert any(asked == len(BIG) and taken < asked for asked, taken in sendfile_calls)
    finally:
        server.stop()


def test_tls_does_not_use_sendfile(root: Path, certs: dict[str, str],
                                   sendfile_calls: list[tuple[int, int]]) -> None:
    context = create_ssl_context(Path(certs["cert"]), Path(certs["key"]))
    server = ServerThread(StaticApp(root), ServerSettings(), context).start()  # type: ignore[arg-type]
    try:
        port = server.port
        client_context = ssl.create_default_context(cafile=certs["ca"])
        r = httpx.get(f"https://127.0.0.1:{port}/mid.bin", verify=client_context)
        assert r.content == MID and not sendfile_calls
    finally:
        server.stop()


def test_a_client_that_stops_reading_meets_the_send_timeout(
        root: Path, sendfile_calls: list[tuple[int, int]]) -> None:
    """What sendfile left over waits in the transport's buffer: the stream waits for it to
    drain (backpressure) and SEND_TIMEOUT closes a connection whose client reads nothing."""
    server = ServerThread(StaticApp(root), ServerSettings(send_timeout=1.0)).start()  # type: ignore[arg-type]
    try:
        with small_buffer_connection(server.port, 4096) as sock:
            sock.sendall(get("/big.bin"))
            time.sleep(2.5)  # reads nothing past the timeout
            assert any(taken < asked for asked, taken in sendfile_calls)
            received = 0
            sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            assert 0 < received < len(BIG)  # closed: a cut response never looks whole
    finally:
        server.stop()


def test_keep_alive_timeouts_move_with_each_request(root: Path) -> None:
    """The connection's phase timer is moved lazily (one handle, re-armed when it fires
    early): requests spaced under IDLE_TIMEOUT keep the connection open past it in total,
    and it closes one IDLE_TIMEOUT after the last answer."""
    settings = ServerSettings(idle_timeout=1.0, header_timeout=0.6)
    server = ServerThread(StaticApp(root), settings).start()  # type: ignore[arg-type]
    try:
        with small_buffer_connection(server.port, 1 << 20) as sock:
            rest = b""
            for _ in range(4):  # 2.1 s in all, each gap 0.7 s
                sock.sendall(get("/small.bin"))
                status, _, body, rest = read_response(sock, rest)
                assert status == b"HTTP/1.1 200 OK" and body == b"tiny file\n"
                time.sleep(0.7)
            sock.sendall(get("/mid.bin"))
            _, _, body, rest = read_response(sock, rest)
            assert body == MID and rest == b""
            answered = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server, idle
            assert 0.8 < time.monotonic() - answered < 2.0
    finally:
        server.stop()
