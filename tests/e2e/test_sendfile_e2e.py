"""X-Accel-Redirect and X-Sendfile against the real server over HTTP/1.1, HTTP/2 and HTTP/3:
the file goes out with its type, validators and ranges plus PHP's other headers, PHP's body
and the header never reach the client, the internal directory is not served directly, and
a path outside the allowed roots is a 500 with a log line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from protocol_clients import ProtocolClient, make_client
from server_harness import PROTOCOLS, PerImpl, Server, impl_of, start_server

REPORT = bytes(range(256)) * 40  # 10 KiB, kept in the static memory cache
BIG = b"0123456789abcdef" * (512 * 1024)  # 8 MiB, streamed from disk

SCRIPTS = {
    "accel.php": """<?php
        header('X-Accel-Redirect: /protected/' . $_GET['f']);
        if (isset($_GET['type'])) header('Content-Type: ' . $_GET['type']);
        header('Content-Disposition: attachment; filename="report.bin"');
        header('Cache-Control: private, max-age=60');
        header('X-Accel-Buffering: no');
        setcookie('seen', '1');
        echo 'PHP BODY MUST NOT BE SENT';""",
    "sendfile.php": """<?php
        header('X-Sendfile: ' . $_GET['p']);
        echo 'PHP BODY MUST NOT BE SENT';""",
    "slow.php": """<?php
        header('X-Sendfile: ' . $_GET['p']);
        flush();
        sleep(3);  // the client has the file long before the script ends
        echo 'PHP BODY MUST NOT BE SENT';""",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sendfile")
    root = base / "public"
    (root / "protected").mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (root / name).write_text(text)
    (root / "protected" / "report.bin").write_bytes(REPORT)
    (root / "secret.txt").write_text("not for X-Accel-Redirect\n")
    files = base / "files"
    files.mkdir()
    (files / "notes.txt").write_text("plain notes\n")
    (files / "big.bin").write_bytes(BIG)
    (files / "escape").symlink_to("/etc")
    return {"root": root, "files": files}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, site: dict[str, Path],
            certs: dict[str, str]) -> Iterator[PerImpl]:
    env = {"X_SENDFILE_ROOTS": str(site["files"]),
           "X_ACCEL_ROOT": f"/protected/={site['root'] / 'protected'}"}
    # four threads: each protocol's slow.php keeps one asleep after its file has gone
    started = PerImpl(lambda impl: start_server(
        tmp_path_factory.mktemp(f"sendfile-{impl}"), site["root"], "--php-workers", "4",
        "--http2-impl", impl, tls=(certs["cert"], certs["key"]), env=env))
    yield started
    started.stop()


@pytest.fixture(params=PROTOCOLS)
def proto(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(servers: PerImpl, proto: str) -> Server:
    """The server the client of the same protocol talks to."""
    return servers[impl_of(proto)]


@pytest.fixture
async def client(proto: str, server: Server,
                 certs: dict[str, str]) -> AsyncIterator[ProtocolClient]:
    c = make_client(proto, server.port, certs["ca"])
    try:
        yield c
    finally:
        await c.close()


def names(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {k.lower() for k, _ in headers}


async def test_accel_redirect_sends_the_file_with_php_headers(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/accel.php?f=report.bin&type=application/pdf")
    assert reply.status == 200
    assert reply.body == REPORT
    assert reply.header(b"content-type") == b"application/pdf"  # the script's own type
    assert reply.header(b"content-disposition") == b'attachment; filename="report.bin"'
    assert reply.header(b"cache-control") == b"private, max-age=60"
    assert reply.header(b"set-cookie") == b"seen=1"
    assert reply.header(b"etag", ) is not None and reply.header(b"last-modified") is not None
    assert reply.header(b"accept-ranges") == b"bytes"
    assert not {b"x-accel-redirect", b"x-accel-buffering", b"x-sendfile"} & names(reply.headers)


async def test_file_type_when_php_left_its_default(client: ProtocolClient,
                                                   site: dict[str, Path]) -> None:
    reply = await client.request("GET", f"/sendfile.php?p={site['files']}/notes.txt")
    assert (reply.status, reply.body) == (200, b"plain notes\n")
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    assert reply.header(b"cache-control") is None  # private files get no public caching


async def test_ranges_conditionals_and_head(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/accel.php?f=report.bin",
                                 headers=[(b"range", b"bytes=10-19")])
    assert reply.status == 206 and reply.body == REPORT[10:20]
    assert reply.header(b"content-range") == b"bytes 10-19/%d" % len(REPORT)
    etag = reply.header(b"etag")
    assert etag is not None
    reply = await client.request("GET", "/accel.php?f=report.bin",
                                 headers=[(b"if-none-match", etag)])
    assert (reply.status, reply.body) == (304, b"")
    reply = await client.request("HEAD", "/accel.php?f=report.bin")
    assert reply.status == 200 and reply.body == b""
    assert reply.header(b"content-length") in (None, b"%d" % len(REPORT))
    reply = await client.request("POST", "/accel.php?f=report.bin", body=b"a=1")
    assert (reply.status, reply.body) == (200, REPORT)  # nginx answers it as a GET


async def test_large_file_streams(client: ProtocolClient, site: dict[str, Path]) -> None:
    reply = await client.request("GET", f"/sendfile.php?p={site['files']}/big.bin")
    assert reply.status == 200 and reply.body == BIG


async def test_internal_directory_is_not_served_directly(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/protected/report.bin")
    assert reply.status == 404 and REPORT not in reply.body


@pytest.mark.parametrize(("path", "status"), [
    ("/accel.php?f=../secret.txt", 500),  # dot segments
    ("/accel.php?f=%2e%2e/secret.txt", 500),
    ("/sendfile.php?p=/etc/passwd", 500),  # outside X_SENDFILE_ROOTS
    ("/sendfile.php?p={files}/escape/passwd", 500),  # a symlink leading out
    ("/sendfile.php?p=relative.txt", 500),
    ("/sendfile.php?p={files}/missing.txt", 404),
    ("/accel.php?f=missing.bin", 404),
])
async def test_refused_paths(client: ProtocolClient, server: Server, site: dict[str, Path],
                             path: str, status: int) -> None:
    path = path.replace("{files}", str(site["files"]))
    reply = await client.request("GET", path)
    assert reply.status == status
    assert b"root:" not in reply.body and b"not for" not in reply.body
    assert b"PHP BODY" not in reply.body and b"/etc" not in reply.body
    assert not {b"x-accel-redirect", b"x-sendfile"} & names(reply.headers)
    if status == 500:
        await asyncio.sleep(0.1)
        assert "file named by PHP refused" in server.logs()


async def test_the_file_goes_out_while_php_still_runs(client: ProtocolClient,
                                                      site: dict[str, Path]) -> None:
    started = time.monotonic()
    reply = await client.request("GET", f"/slow.php?p={site['files']}/notes.txt")
    assert (reply.status, reply.body) == (200, b"plain notes\n")
    assert time.monotonic() - started < 2  # not after the script's sleep(3)
