"""ERROR_PAGES_DIR against the real server, over HTTP/1.1, HTTP/2 and HTTP/3: which answers
become a page (router 403/404/405, PHP's empty 500 after a fatal error, 503 overload, 504,
413), what stays (status, other headers, a PHP body of its own), plain text for clients
that do not ask for HTML, pages re-read when they change, none left in the document root."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from protocol_clients import Reply, make_client
from server_harness import H2_IMPLS, PROTOCOLS, REPO, PerImpl, Server, curl, impl_of, start_server

from gateway.pipeline.error_pages import builtin_page

pytestmark = pytest.mark.e2e

BROWSER = [(b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
           (b"accept-encoding", b"gzip, deflate, br, zstd")]
CUSTOM_404 = b"<!doctype html><title>Lost</title><h1>custom 404</h1>\n"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pages")
    (d / "404.html").write_bytes(CUSTOM_404)
    (d / "503.html").write_bytes(b"<h1>busy</h1>")
    return d


@pytest.fixture(scope="module")
def pages_servers(tmp_path_factory: pytest.TempPathFactory, docroot: Path, pages: Path,
                  certs: dict[str, str]) -> Iterator[PerImpl]:
    root = tmp_path_factory.mktemp("pages-root")
    shutil.copytree(docroot, root, dirs_exist_ok=True, symlinks=True)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "x.txt").write_text("not served")
    (root / "outside").symlink_to(elsewhere)  # 403: resolves outside the document root
    started = PerImpl(lambda impl: start_server(
        tmp_path_factory.mktemp(f"pages-{impl}"), root, "--http2-impl", impl,
        tls=(certs["cert"], certs["key"]),
        env={"ERROR_PAGES_DIR": str(pages), "REQUEST_TIMEOUT": "2s", "MAX_BODY_SIZE": "1K",
             "QUEUE_CAPACITY": "1", "SYMLINKS": "inside-root"}))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def pages_server(pages_servers: PerImpl) -> Server:
    return pages_servers["nghttp2"]


def assert_page(reply: Reply, status: int, page: bytes) -> None:
    assert reply.status == status, reply
    assert reply.body == page
    assert reply.header(b"content-type") == b"text/html; charset=utf-8"
    assert reply.header(b"content-length") in (None, b"%d" % len(page))  # h1 sends it
    assert reply.header(b"content-encoding") is None


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_error_pages_over_each_protocol(pages_servers: PerImpl, certs: dict[str, str],
                                        proto: str) -> None:
    async def run() -> None:
        client = make_client(proto, pages_servers[impl_of(proto)].port, certs["ca"])
        try:
            reply = await client.request("GET", "/no/such/page", headers=BROWSER)
            assert_page(reply, 404, CUSTOM_404)
            if proto == "h1":
                assert reply.header(b"content-length") == b"%d" % len(CUSTOM_404)
            # a fatal error with display_errors off: PHP's empty 500, no file: built-in page
            assert_page(await client.request("GET", "/fail.php?kind=fatal", headers=BROWSER),
                        500, builtin_page(500))
            reply = await client.request("TRACE", "/", headers=BROWSER)
            assert_page(reply, 405, builtin_page(405))
            assert reply.header(b"allow") == b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
            assert_page(await client.request("GET", "/outside/x.txt", headers=BROWSER),
                        403, builtin_page(403))
            assert_page(await client.request("GET", "/sleep.php?s=10", headers=BROWSER),
                        504, builtin_page(504))
            # PHP's own error body stays, and so does everything for a plain client
            reply = await client.request("GET", "/status.php?mode=line", headers=BROWSER[:1])
            assert (reply.status, reply.body) == (404, b"missing")
            reply = await client.request("GET", "/no/such/page", headers=[(b"accept", b"*/*")])
            assert (reply.status, reply.body) == (404, b"404 Not Found\n")
            assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
            if proto != "h1":  # refused from its headers: the request (and Accept) is known
                reply = await client.request("POST", "/echo_input.php", body=b"x" * 4096,
                                             headers=[*BROWSER, (b"content-length", b"4096")])
                assert_page(reply, 413, builtin_page(413))
        finally:
            await client.close()

    asyncio.run(run())


@pytest.mark.parametrize("impl", H2_IMPLS)
def test_overload_503_is_the_page(pages_servers: PerImpl, certs: dict[str, str],
                                  impl: str) -> None:
    """Two PHP threads busy and the one queue slot taken: the next request is refused."""
    pages_server = pages_servers[impl]

    async def run() -> None:
        clients = [make_client("h2", pages_server.port, certs["ca"]) for _ in range(4)]
        try:
            busy = []
            for c in clients[:3]:  # one at a time: each is taken or queued before the next
                busy.append(asyncio.create_task(c.request("GET", "/sleep.php?s=1.5")))
                await asyncio.sleep(0.25)
            reply = await clients[3].request("GET", "/hello.php", headers=BROWSER)
            assert_page(reply, 503, b"<h1>busy</h1>")
            assert reply.header(b"retry-after") == b"1"
            # the two that ran; the queued one may outlast REQUEST_TIMEOUT (2 s) in the queue
            assert [r.status for r in await asyncio.gather(*busy)][:2] == [200, 200]
        finally:
            for c in clients:
                await c.close()

    asyncio.run(run())


def test_pages_are_reread_when_they_change(tmp_path: Path, docroot: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "404.html").write_bytes(b"first")
    s = start_server(tmp_path, docroot, "--error-pages-dir", str(pages))
    try:
        url = f"{s.url}/missing"
        assert curl("-H", "Accept: text/html", url).stdout == b"first"
        (pages / "404.html").write_bytes(b"second, longer")
        (pages / "410.html").write_bytes(b"gone")
        deadline = time.monotonic() + 10
        while (body := curl("-H", "Accept: text/html", url).stdout) != b"second, longer":
            assert body == b"first" and time.monotonic() < deadline, body
            time.sleep(0.2)
        head = curl("-s", "-D", "-", "-o", "/dev/null", "-H", "Accept: text/html", url).stdout
        assert b"content-length: 14\r\n" in head.lower()
    finally:
        s.stop()


def test_shipped_pages_are_not_in_the_document_root(tmp_path: Path) -> None:
    assert not (REPO / "www" / "errors").exists()
    shipped = REPO / "gateway" / "error_pages"
    s = start_server(tmp_path, REPO / "www", "--error-pages-dir", str(shipped))
    try:
        r = curl("-s", "-w", "\n%{http_code} %{content_type}", "-H", "Accept: text/html",
                 f"{s.url}/errors/404.html")
        body, _, meta = r.stdout.rpartition(b"\n")
        assert meta == b"404 text/html; charset=utf-8"
        assert body == (shipped / "404.html").read_bytes()
        assert curl(f"{s.url}/errors/404.html").stdout == b"404 Not Found\n"
    finally:
        s.stop()


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /a b HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nAccept: text/html\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    (b"POST /echo_input.php HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
     b"Content-Length: 5000\r\n\r\n", 413),
], ids=["400", "414", "431", "413"])
def test_http1_parser_errors_get_the_page(pages_server: Server, certs: dict[str, str],
                                          head: bytes, status: int) -> None:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", pages_server.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-type: text/html; charset=utf-8" in head_part.lower()
    assert b"connection: close" in head_part.lower()
    assert body == builtin_page(status)
