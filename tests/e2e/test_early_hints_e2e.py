"""103 Early Hints from PHP (FrankenPHP's headers_send()) over HTTP/1.1, HTTP/2 and HTTP/3
against the real server: the Link headers set so far leave at once, before the final
response, while the script is still working; nothing else goes with them."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator

import pytest
from protocol_clients import ProtocolClient
from server_harness import PerImpl, Server, scripts_per_impl

SCRIPTS = {
    "hints.php": """<?php
        header('Link: </app.css>; rel=preload; as=style');
        header('Link: </app.js>; rel=preload; as=script', false);
        setcookie('session', 'secret');
        $sent = headers_send(103);
        usleep(400000);  // the page is still being made when the hints arrive
        header('Content-Type: application/json');
        echo json_encode(['sent' => $sent]);""",
    "late.php": """<?php
        echo 'body first';
        flush();
        header('Link: </late.css>; rel=preload');
        echo ' ', headers_send(103);""",
    "final.php": """<?php
        header('X-Made: early');
        echo headers_send(201), ' ';
        echo json_encode(headers_list());""",
    "bad.php": """<?php
        try { headers_send(101); } catch (ValueError $e) { echo $e->getMessage(); }""",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            certs: dict[str, str]) -> Iterator[PerImpl]:
    started = scripts_per_impl(tmp_path_factory, "hints", SCRIPTS, certs)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(servers: PerImpl) -> Server:
    return servers["nghttp2"]


async def test_early_hints_precede_the_response(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/hints.php")
    assert reply.status == 200
    assert json.loads(reply.body) == {"sent": 1}
    assert len(reply.interims) == 1
    status, fields, at = reply.interims[0]
    assert status == 103
    links = [v for k, v in fields if k.lower() == b"link"]
    assert links == [b"</app.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
    names = {k.lower() for k, _ in fields if not k.startswith(b":")}
    assert names == {b"link"}  # no cookie, no content-type: those wait for the response
    assert reply.arrivals and reply.arrivals[0] - at > 0.3  # sent while PHP still worked
    assert reply.header(b"set-cookie") == b"session=secret"
    assert reply.header(b"link") is not None  # the final response keeps its headers


async def test_no_hints_once_the_response_started(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/late.php")
    assert (reply.status, reply.body, reply.interims) == (200, b"body first 3", [])


async def test_a_final_status_sends_the_head_now(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/final.php")
    assert reply.status == 201 and reply.interims == []
    assert reply.body.startswith(b"0 ")  # sapi_send_headers() succeeded
    assert reply.header(b"x-made") == b"early"


async def test_other_informational_statuses_are_refused(client: ProtocolClient) -> None:
    reply = await client.request("GET", "/bad.php")
    assert reply.status == 200 and reply.interims == []
    assert b"must be 103 or a final status" in reply.body


def test_http10_clients_get_no_interim_response(server: Server, certs: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /hints.php HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while data := tls.recv(65536):
            received += data
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b" 103 " not in received and received.endswith(b'{"sent":1}')
