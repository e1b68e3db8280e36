"""Where a PHP application sees php-fpm behind nginx, it sees the same here, over HTTP/1.1,
HTTP/2 and HTTP/3 against the real server: Location after a POST is 302, a Content-Length
the script gets wrong is held to as nginx holds it, exit(N) marks that request only,
getallheaders() names headers as php-fpm does, and php://input yields request-body lines
as they arrive (REQUEST_BUFFERING=off). The expected values are what nginx 1.22 + php-fpm
answer to the same scripts (docs/php-runtime.md)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from protocol_clients import ProtocolClient, make_client
from server_harness import PerImpl, Server, scripts_per_impl

SCRIPTS = {
    "redirect.php": "<?php header('Location: /next'); echo 'moved';",
    # n: the Content-Length it declares; out: the bytes it writes; flush: stream them
    "length.php": """<?php
        header('Content-Length: ' . (int) $_GET['n']);
        $out = str_repeat('x', (int) $_GET['out']);
        if (!empty($_GET['flush'])) {
            while (ob_get_level()) ob_end_flush();
            $half = intdiv(strlen($out), 2);
            echo substr($out, 0, $half); flush(); usleep(100000); echo substr($out, $half);
        } else {
            echo $out;
        }""",
    "exit.php": "<?php usleep(300000); echo 'bye';"
                "if (isset($_GET['code'])) exit((int) $_GET['code']);",
    "hello.php": "<?php echo 'hello';",
    "headers.php": "<?php header('Content-Type: application/json');"
                   " echo json_encode(getallheaders());",
    "session.php": """<?php
        session_start();
        $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
        header('Content-Type: application/json');
        $dir = session_save_path() ?: sys_get_temp_dir();
        echo json_encode(['n' => $_SESSION['n'], 'writable' => is_writable($dir)]);""",
    "lines.php": """<?php
        while (ob_get_level()) ob_end_flush();
        header('Content-Type: text/plain');
        $in = fopen('php://input', 'r');
        while (($line = fgets($in)) !== false) { echo 'got ', $line; flush(); }
        echo "end\\n";""",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            certs: dict[str, str]) -> Iterator[PerImpl]:
    started = scripts_per_impl(tmp_path_factory, "parity", SCRIPTS, certs,
                              env={"REQUEST_BUFFERING": "off"})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(servers: PerImpl) -> Server:
    return servers["nghttp2"]


async def test_location_after_post_is_302(client: ProtocolClient) -> None:
    for method in ("POST", "PUT", "GET"):
        reply = await client.request(method, "/redirect.php", body=b"a=1")
        assert reply.status == 302, method  # PHP alone picks 303 for HTTP/1.1 POSTs
        assert reply.header(b"location") == b"/next"
        assert reply.body == b"moved"


@pytest.mark.parametrize("flush", ["", "1"])
async def test_output_longer_than_content_length_is_cut_to_it(client: ProtocolClient,
                                                              flush: str) -> None:
    reply = await client.request("GET", f"/length.php?n=5&out=10&flush={flush}")
    assert (reply.status, reply.header(b"content-length"), reply.body) == (200, b"5", b"xxxxx")
    again = await client.request("GET", "/hello.php")  # the connection is still good
    assert (again.status, again.body) == (200, b"hello")


@pytest.mark.parametrize("flush", ["", "1"])
async def test_output_shorter_than_content_length_ends_in_an_abort(client: ProtocolClient,
                                                                   flush: str) -> None:
    started = time.monotonic()
    try:
        reply = await asyncio.wait_for(
            client.request("GET", f"/length.php?n=20&out=10&flush={flush}"), 10)
    except Exception as exc:  # h1: the connection closes; h3: the stream is reset
        assert not isinstance(exc, TimeoutError), "the client was left waiting"
    else:  # h2: the stream is reset after the bytes there were
        assert reply.status == 200 and reply.body == b"x" * 10
    assert time.monotonic() - started < 5
    again = await make_and_get(client)
    assert again == (200, b"hello")


async def make_and_get(client: ProtocolClient) -> tuple[int, bytes]:
    reply = await client.request("GET", "/hello.php")
    return reply.status, reply.body


async def test_getallheaders_names_headers_as_php_fpm(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/headers.php", headers=[
        (b"authorization", b"Bearer t"), (b"x-requested-with", b"XMLHttpRequest"),
        (b"x-camelcase", b"v"), (b"x_under", b"dropped")])
    headers = json.loads(reply.body)
    assert headers["Authorization"] == "Bearer t"
    assert headers["X-Requested-With"] == "XMLHttpRequest"
    assert headers["X-Camelcase"] == "v"  # php-fpm: first letter of each word upper case
    assert headers["Host"].startswith("127.0.0.1")
    assert not any("_" in name or name != name.title() for name in headers), headers


async def test_exit_status_marks_only_its_request(server: Server, certs: dict[str, str]) -> None:
    clients = [make_client("h1", server.port, certs["ca"]) for _ in range(2)]
    marked = server.logs().count("exited with a non-zero status")
    try:
        # one exit(3) on each of the two PHP threads at once, then plain requests on both
        exits = await asyncio.gather(*[c.request("GET", "/exit.php?code=3") for c in clients])
        assert [(r.status, r.body) for r in exits] == [(200, b"bye")] * 2
        for _ in range(3):
            pages = await asyncio.gather(*[c.request("GET", "/exit.php") for c in clients])
            assert [(r.status, r.body) for r in pages] == [(200, b"bye")] * 2
    finally:
        for c in clients:
            await c.close()
    await asyncio.sleep(0.2)
    assert server.logs().count("exited with a non-zero status") - marked == 2


def test_php_input_yields_lines_as_they_arrive(server: Server, certs: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"PUT /lines.php HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
        received = b""
        for line in (b"first\n", b"second\n"):
            tls.sendall(b"%x\r\n%s\r\n" % (len(line), line))
            # the script answers each line before the next is sent: nothing waits for 8 KiB
            while b"got " + line not in received:
                data = tls.recv(65536)
                assert data, received
                received += data
        tls.sendall(b"0\r\n\r\n")
        while not received.endswith(b"0\r\n\r\n"):
            data = tls.recv(65536)
            assert data, received
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"got first\n" in body and b"got second\n" in body and b"end\n" in body


async def test_sessions_work_with_the_shipped_php_ini(client: ProtocolClient) -> None:
    # no session.save_path to create first: the shipped php.ini uses the temp directory
    first = await client.request("GET", "/session.php")
    assert first.status == 200 and json.loads(first.body)["n"] == 1
    assert json.loads(first.body)["writable"] is True
    cookie = first.header(b"set-cookie")
    assert cookie is not None and cookie.startswith(b"PHPSESSID=")
    crumb = cookie.split(b";", 1)[0]
    second = await client.request("GET", "/session.php", headers=[(b"cookie", crumb)])
    assert json.loads(second.body)["n"] == 2
