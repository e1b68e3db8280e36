"""The same scenarios over every protocol the gateway speaks, against the real server: HTTP/1.1
on both parsers, HTTP/2 and HTTP/3, all on one TLS port (ALPN for TCP, UDP for QUIC). One
request lifecycle serves them all (gateway/server/stream.py); these tests hold it to that."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from protocol_clients import ProtocolClient, make_client
from server_harness import STACKS, Server, start_server

pytestmark = pytest.mark.e2e

PROTOCOLS = ["h1-httptools", "h1-h11", "h2-nghttp2", "h2-h2", "h3"]
ON_H11 = ("h1-h11", "h2-h2")  # served by the h11 + h2 server, the others by the first


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, docroot: Path,
            certs: dict[str, str]) -> Iterator[dict[str, Server]]:
    """One TLS server per HTTP/1 parser and HTTP/2 implementation (server_harness.STACKS);
    HTTP/3 uses the first."""
    started: dict[str, Server] = {}
    try:
        for parser, impl in STACKS:
            started[parser] = start_server(
                tmp_path_factory.mktemp(f"proto-{parser}"), docroot, "--http1-parser", parser,
                "--http2-impl", impl, tls=(certs["cert"], certs["key"]))
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(params=PROTOCOLS)
async def client(request: pytest.FixtureRequest, servers: dict[str, Server],
                 certs: dict[str, str]) -> AsyncIterator[ProtocolClient]:
    name: str = request.param
    server = servers["h11" if name in ON_H11 else "httptools"]
    c = make_client(name, server.port, certs["ca"])
    try:
        yield c
    finally:
        await c.close()


async def test_php_page(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/server.php/tail?q=1", headers=[(b"x-probe", b"yes")])
    assert reply.status == 200
    assert reply.header(b"content-type", ) == b"application/json"
    server = json.loads(reply.body)["server"]
    assert server["SERVER_PROTOCOL"] == client.version
    assert server["HTTPS"] == "on" and server["REQUEST_SCHEME"] == "https"
    assert (server["PATH_INFO"], server["QUERY_STRING"]) == ("/tail", "q=1")
    assert server["HTTP_X_PROBE"] == "yes"


async def test_static_file_and_its_validators(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/static.txt")
    assert (reply.status, reply.body) == (200, b"plain static text\n")
    assert reply.header(b"content-length") == b"18"
    etag = reply.header(b"etag")
    assert etag is not None
    again = await client.request("GET", "/static.txt", headers=[(b"if-none-match", etag)])
    assert (again.status, again.body) == (304, b"")


async def test_upload(client: ProtocolClient, tmp_path: Path) -> None:
    content = os.urandom(100_000)
    boundary = b"----gatewayboundary"
    body = b"".join([
        b"--", boundary, b"\r\n",
        b'content-disposition: form-data; name="field"\r\n\r\nvalue\r\n',
        b"--", boundary, b"\r\n",
        b'content-disposition: form-data; name="doc"; filename="doc.bin"\r\n',
        b"content-type: application/octet-stream\r\n\r\n", content, b"\r\n",
        b"--", boundary, b"--\r\n",
    ])
    reply = await client.request(
        "POST", f"/upload.php?dest={tmp_path}",
        headers=[(b"content-type", b"multipart/form-data; boundary=" + boundary)], body=body)
    assert reply.status == 200, reply.body
    result = json.loads(reply.body)
    assert result["doc"]["size"] == len(content) and result["doc"]["is_uploaded"]
    assert result["doc"]["moved"] and result["_post"] == {"field": "value"}
    assert (tmp_path / "doc.bin").read_bytes() == content


async def test_streamed_response_arrives_as_it_is_written(client: ProtocolClient) -> None:
    started = time.monotonic()
    reply = await client.request("GET", "/stream.php?n=4&ms=250")
    assert reply.status == 200
    lines = reply.body.decode().splitlines()
    assert [line.split()[:2] for line in lines] == [["line", str(i)] for i in range(4)]
    # flushed lines come one by one: the first long before the script ends
    assert reply.arrivals[0] - started < 0.5
    assert reply.arrivals[-1] - reply.arrivals[0] > 0.6


async def test_head_has_the_get_headers_and_no_body(client: ProtocolClient) -> None:
    static = await client.request("HEAD", "/static.txt")
    assert (static.status, static.body) == (200, b"")
    assert static.header(b"content-length") == b"18"
    php = await client.request("HEAD", "/big.php?kb=64")
    assert (php.status, php.body) == (200, b"")
    assert php.header(b"content-type") == b"application/octet-stream"


async def test_app_failure_is_500_and_the_connection_serves_on(client: ProtocolClient) -> None:
    failed = await client.request("GET", "/fail.php?kind=fatal")
    assert failed.status == 500
    ok = await client.request("GET", "/hello.php")
    assert ok.status == 200


async def test_client_reset_mid_response(client: ProtocolClient, tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    read = await client.abandon(f"/progress.php?kb=65536&file={progress}", after=64 * 1024)
    assert read >= 64 * 1024
    # the PHP thread is let go: the script stops well before its 64 MiB
    await asyncio.sleep(1.0)
    stopped_at = int(progress.read_text())
    await asyncio.sleep(0.5)
    assert int(progress.read_text()) == stopped_at < 64 * 1024 * 1024
    # and the server (on HTTP/2 and HTTP/3 the same connection) serves on
    digest = hashlib.sha256((await client.request("GET", "/big.php?kb=256")).body).hexdigest()
    block = bytes(range(256)) * 32
    assert digest == hashlib.sha256(block * 32).hexdigest()


async def test_trace_is_refused_with_405(client: ProtocolClient) -> None:
    reply = await client.request("TRACE", "/hello.php")
    assert reply.status == 405
    assert reply.header(b"allow") == b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
