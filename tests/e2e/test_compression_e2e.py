"""Compression against the real server over HTTP/1.1 (both parsers), HTTP/2 and HTTP/3: what
is encoded and how, PHP's own gzip kept once, static files' siblings and cached forms,
conditional requests across encodings, and SSE events arriving one by one, compressed."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from protocol_clients import ProtocolClient, make_client
from server_harness import PHP_FIXTURES, STACKS, Server, start_server

from gateway.pipeline.compressors import BEST, compress_whole, decompress

pytestmark = pytest.mark.e2e

PROTOCOLS = ["h1-httptools", "h1-h11", "h2-nghttp2", "h2-h2", "h3"]
ON_H11 = ("h1-h11", "h2-h2")  # served by the h11 + h2 server, the others by the first
BROWSER = [(b"accept-encoding", b"gzip, deflate, br, zstd")]
CSS = b"".join(b".rule-%d { color: #%06x; margin: %dpx; }\n" % (i, i * 997, i % 40)
               for i in range(800))
PAGE = b"<!doctype html>\n" + b"".join(
    b"<li><a href=\"/item/%d\">Item number %d</a> <span>%s</span></li>\n" % (i, i, b"*" * (i % 9))
    for i in range(450))  # ~24 KB of static HTML


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compression-root")
    for name in ("html.php", "sse.php", "php_gzip.php", "hello.php", "fail.php", "stream.php",
                 "spill.php"):
        shutil.copy2(PHP_FIXTURES / name, root / name)
    (root / "page.html").write_bytes(PAGE)
    (root / "app.css").write_bytes(CSS)
    (root / "app.css.br").write_bytes(compress_whole("br", CSS, 7))  # written after: fresh
    (root / "site.css").write_bytes(CSS)  # no sibling
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + CSS)
    (root / "tiny.txt").write_bytes(b"short text\n")
    return root


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, root: Path,
            certs: dict[str, str]) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for parser, impl in STACKS:
            started[parser] = start_server(
                tmp_path_factory.mktemp(f"compress-{parser}"), root, "--http1-parser", parser,
                "--http2-impl", impl, tls=(certs["cert"], certs["key"]))
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(params=PROTOCOLS)
async def client(request: pytest.FixtureRequest, servers: dict[str, Server],
                 certs: dict[str, str]) -> AsyncIterator[ProtocolClient]:
    name: str = request.param
    c = make_client(name, servers["h11" if name in ON_H11 else "httptools"].port,
                    certs["ca"])
    try:
        yield c
    finally:
        await c.close()


async def test_php_page_in_each_coding(client: ProtocolClient) -> None:
    plain = await client.request("GET", "/html.php?kb=24")
    assert plain.status == 200 and len(plain.body) == 24 * 1024
    assert plain.header(b"content-encoding") is None
    assert plain.header(b"vary") == b"Accept-Encoding"
    for accept, coding in [(b"gzip, deflate, br, zstd", "zstd"), (b"br", "br"),
                           (b"gzip", "gzip"), (b"gzip;q=1, zstd;q=0.5", "gzip")]:
        reply = await client.request("GET", "/html.php?kb=24",
                                     headers=[(b"accept-encoding", accept)])
        assert reply.status == 200
        assert reply.header(b"content-encoding") == coding.encode()
        assert reply.header(b"vary") == b"Accept-Encoding"
        # a page under the bridge's 64 KiB batch reaches the loop whole: compressed in one
        # go, with its new length
        assert reply.header(b"content-length") == b"%d" % len(reply.body)
        assert len(reply.body) < len(plain.body) // 2
        assert decompress(coding, reply.body) == plain.body


async def test_php_etag_becomes_weak_and_refused_identity_still_answers(
        client: ProtocolClient) -> None:
    reply = await client.request("GET", "/html.php?kb=4&etag=1", headers=BROWSER)
    assert reply.header(b"etag") == b'W/"page-v1"'
    plain = await client.request("GET", "/html.php?kb=4&etag=1")
    assert plain.header(b"etag") == b'"page-v1"'
    refused = await client.request("GET", "/html.php?kb=4",
                                   headers=[(b"accept-encoding", b"identity;q=0, deflate")])
    assert refused.status == 200 and refused.header(b"content-encoding") is None
    assert refused.body == (await client.request("GET", "/html.php?kb=4")).body


async def test_one_megabyte_page(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/html.php?kb=1024", headers=BROWSER)
    assert reply.status == 200 and reply.header(b"content-encoding") == b"zstd"
    body = decompress("zstd", reply.body)
    assert len(body) == 1024 * 1024 and body.startswith(b"<tr><td>row 0</td>")


@pytest.mark.parametrize("via", ["handler", "ini"])
async def test_php_own_compression_is_kept_once(client: ProtocolClient, via: str) -> None:
    reply = await client.request("GET", f"/php_gzip.php?via={via}", headers=BROWSER)
    assert reply.status == 200
    assert reply.header(b"content-encoding") == b"gzip"
    assert decompress("gzip", reply.body) == b"<p>compressed by PHP itself</p>\n" * 800


async def test_sse_events_arrive_one_by_one_compressed(client: ProtocolClient) -> None:
    n, gap = 5, 0.2
    reply = await client.request("GET", f"/sse.php?n={n}&ms={int(gap * 1000)}",
                                 headers=[(b"accept-encoding", b"zstd, br, gzip")])
    assert reply.status == 200
    assert (reply.header(b"content-type") or b"").startswith(b"text/event-stream")
    assert reply.header(b"content-encoding") == b"zstd"
    assert reply.header(b"content-length") is None
    assert decompress("zstd", reply.body) == b"".join(
        b'id: %d\nevent: tick\ndata: {"n": %d}\n\n' % (i, i) for i in range(n))
    # each event left when PHP flushed it: one burst of arrivals per event, spread over the
    # script's run (buffering would bring them all in one burst at the end)
    bursts = [reply.arrivals[0]]
    for before, after in itertools.pairwise(reply.arrivals):
        if after - before > gap / 4:
            bursts.append(after)
    assert len(bursts) == n, reply.arrivals
    assert bursts[-1] - bursts[0] > (n - 1) * gap * 0.75, bursts


async def test_php_flush_reaches_the_client_compressed(client: ProtocolClient) -> None:
    """Plain streamed output (not SSE): each flush() of PHP's flushes the encoder too."""
    n, gap = 4, 0.25
    reply = await client.request("GET", f"/stream.php?n={n}&ms={int(gap * 1000)}",
                                 headers=[(b"accept-encoding", b"gzip")])
    assert reply.status == 200 and reply.header(b"content-encoding") == b"gzip"
    lines = decompress("gzip", reply.body).splitlines()
    assert [line.split()[:2] for line in lines] == [[b"line", b"%d" % i] for i in range(n)]
    bursts = [reply.arrivals[0]]
    for before, after in itertools.pairwise(reply.arrivals):
        if after - before > gap / 4:
            bursts.append(after)
    assert len(bursts) == n + 1, reply.arrivals  # and the gzip trailer after the last pause


async def test_output_buffering_spills_are_compressed_as_one_stream(
        client: ProtocolClient) -> None:
    """Spills without a flush() are held by the encoder: nothing of the page's first half
    is sent during the pause that follows it, and the whole decodes."""
    pause = 0.4
    started = time.monotonic()
    reply = await client.request("GET", f"/spill.php?ms={int(pause * 1000)}",
                                 headers=[(b"accept-encoding", b"zstd")])
    assert reply.status == 200 and reply.header(b"content-encoding") == b"zstd"
    body = decompress("zstd", reply.body)
    assert len(body) == 40800 and body.count(b"<tr>") == 800
    assert reply.arrivals and reply.arrivals[0] - started >= pause * 0.9, (
        started, reply.arrivals)


async def test_static_sibling_and_cached_form(client: ProtocolClient) -> None:
    sibling = await client.request("GET", "/app.css", headers=BROWSER)  # no .zst: the .br
    assert sibling.header(b"content-encoding") == b"br"
    assert sibling.header(b"content-length") == b"%d" % len(sibling.body)
    assert sibling.body == compress_whole("br", CSS, 7)
    assert sibling.header(b"content-type") == b"text/css; charset=utf-8"
    best = compress_whole("gzip", PAGE, BEST["gzip"])
    for _ in range(50):  # the first answers are encoded on the fly while the best is made
        reply = await client.request("GET", "/page.html", headers=[(b"accept-encoding",
                                                                    b"gzip")])
        assert reply.header(b"content-encoding") == b"gzip"
        assert decompress("gzip", reply.body) == PAGE
        if reply.body == best:
            break
    else:
        pytest.fail("the cached best-quality form never came")
    assert reply.header(b"vary") == b"Accept-Encoding"
    assert reply.header(b"etag", ) is not None and reply.header(b"etag").startswith(b"W/")


async def test_conditional_requests_across_encodings(client: ProtocolClient) -> None:
    first = await client.request("GET", "/app.css", headers=BROWSER)
    etag = first.header(b"etag")
    assert etag is not None and etag.startswith(b'W/"')
    again = await client.request("GET", "/app.css", headers=[*BROWSER, (b"if-none-match", etag)])
    assert (again.status, again.body) == (304, b"")
    assert again.header(b"etag") == etag and again.header(b"vary") == b"Accept-Encoding"
    plain = await client.request("GET", "/app.css", headers=[(b"if-none-match", etag)])
    assert plain.status == 304 and plain.header(b"etag") == etag.removeprefix(b"W/")


async def test_answers_left_unencoded(client: ProtocolClient) -> None:
    ranged = await client.request("GET", "/page.html", headers=[*BROWSER,
                                                                (b"range", b"bytes=0-99")])
    assert ranged.status == 206 and ranged.body == PAGE[:100]
    assert ranged.header(b"content-encoding") is None
    head = await client.request("HEAD", "/page.html", headers=BROWSER)
    assert head.status == 200 and head.header(b"content-encoding") is None
    assert head.header(b"content-length") == b"%d" % len(PAGE)
    assert head.header(b"vary") == b"Accept-Encoding"
    for path in ("/logo.png", "/tiny.txt"):  # not a listed type; below the minimum size
        reply = await client.request("GET", path, headers=BROWSER)
        assert reply.header(b"content-encoding") is None and reply.header(b"vary") is None
    failed = await client.request("GET", "/fail.php?kind=fatal",
                                  headers=[*BROWSER, (b"accept", b"text/html")])
    assert failed.status == 500 and failed.header(b"content-encoding") is None
    assert b"<h1>500</h1>" in failed.body  # the error page, not an empty compressed frame


def test_options_change_what_is_compressed(tmp_path: Path, root: Path) -> None:
    server = start_server(tmp_path, root, "--compression-encodings", "gzip, br",
                          "--compression-min-size", "30K", "--compression-types", "text/css")
    try:
        with httpx.Client(base_url=server.url, headers={"accept-encoding": "zstd, br, gzip"},
                          timeout=10) as c:
            css = c.get("/site.css")  # a listed type: gzip first in our order now
            assert css.headers["content-encoding"] == "gzip" and css.content == CSS
            sibling = c.get("/app.css")  # the shipped .br, which the client accepts, wins
            assert sibling.headers["content-encoding"] == "br" and sibling.content == CSS
            html = c.get("/html.php?kb=64")  # not a listed type any more
            assert "content-encoding" not in html.headers and "vary" not in html.headers
            css_small = c.get("/app.css", headers={"range": "bytes=0-9"})
            assert css_small.status_code == 206
    finally:
        server.stop()


def test_compression_off(tmp_path: Path, root: Path) -> None:
    server = start_server(tmp_path, root, "--compression", "off")
    try:
        with httpx.Client(base_url=server.url, headers={"accept-encoding": "zstd, br, gzip"},
                          timeout=10) as c:
            for path in ("/html.php?kb=24", "/app.css", "/page.html"):
                reply = c.get(path)
                assert reply.status_code == 200
                assert "content-encoding" not in reply.headers and "vary" not in reply.headers
    finally:
        server.stop()
