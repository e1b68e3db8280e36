"""Worker mode through the real server (WORKER_SCRIPT=tests/php/worker.php) over HTTP/1.1,
HTTP/2 and HTTP/3: the application boots once and its state persists, while one request's
superglobals, headers, cookies, session and uploads never reach the next, even with two
clients interleaved on the same worker; failures restart the script; WORKER_MAX_REQUESTS and
PHP_MAX_REQUESTS restart it; a drain lets it leave its loop; a script that cannot boot is
reported instead of spinning."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from protocol_clients import ProtocolClient, Reply, make_client
from server_harness import PROTOCOLS, PerImpl, Server, curl, impl_of, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker_servers(tmp_path_factory: pytest.TempPathFactory, docroot: Path,
                   certs: dict[str, str]) -> Iterator[PerImpl]:
    # one PHP thread: every request, from every client, meets the same running worker
    started = PerImpl(lambda impl: start_server(
        tmp_path_factory.mktemp(f"worker-{impl}"), docroot, "--php-workers", "1",
        "--worker-script", str(docroot / "worker.php"), "--request-timeout", "4",
        "--http2-impl", impl, tls=(certs["cert"], certs["key"])))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def worker_server(worker_servers: PerImpl) -> Server:
    return worker_servers["nghttp2"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_client(server: Server, certs: dict[str, str], proto: str, fn: Any) -> Any:
    client = make_client(proto, server.port, certs["ca"])
    try:
        return await fn(client)
    finally:
        await client.close()


async def get_json(client: ProtocolClient, path: str, **kw: Any) -> dict[str, Any]:
    r = await client.request("GET" if "body" not in kw else "POST", path, **kw)
    assert r.status == 200, (r.status, r.body)
    return dict(json.loads(r.body))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_the_application_boots_once_and_its_state_persists(
        worker_servers: PerImpl, certs: dict[str, str], proto: str) -> None:
    worker_server = worker_servers[impl_of(proto)]
    async def go(c: ProtocolClient) -> list[dict[str, Any]]:
        return [await get_json(c, f"/shop/item/{i}?case=state") for i in range(4)]

    states = run(with_client(worker_server, certs, proto, go))
    assert len({s["boot"] for s in states}) == 1
    counts = [s["count"] for s in states]
    assert counts == list(range(counts[0], counts[0] + 4))
    assert states[0]["boot_server"]["SCRIPT_FILENAME"] == str(worker_server.docroot /
                                                              "worker.php")


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_routing_sends_php_to_the_worker_and_serves_static_files(
        worker_servers: PerImpl, certs: dict[str, str], proto: str) -> None:
    worker_server = worker_servers[impl_of(proto)]
    async def go(c: ProtocolClient) -> None:
        r = await c.request("GET", "/static.txt")
        assert (r.status, r.body) == (200, b"plain static text\n")
        assert r.header(b"x-boot") is None
        # the worker lies in the root: its own name is the entry point's URL
        for path in ("/", "/missing/page?case=state", "/worker.php/tail?case=state"):
            r = await c.request("GET", path)
            assert r.status == 200 and r.header(b"x-boot"), (path, r.status)
        g = await get_json(c, "/worker.php/tail?case=globals")
        assert g["server"]["SCRIPT_NAME"] == "/worker.php"
        assert g["server"]["PATH_INFO"] == "/tail"
        assert g["server"]["SERVER_PROTOCOL"] == {"h1": "HTTP/1.1", "h2": "HTTP/2.0",
                                                  "h3": "HTTP/3.0"}[proto.split("-")[0]]
        # no other script runs in front-controller mode, nor is PHP source ever sent
        r = await c.request("GET", "/hello.php")
        assert r.status == 404

    run(with_client(worker_server, certs, proto, go))


def multipart(content: bytes) -> tuple[bytes, bytes]:
    boundary = b"----pg" + os.urandom(8).hex().encode()
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"secret.txt\"\r\nContent-Type: text/plain\r\n\r\n" + content
            + b"\r\n--" + boundary + b"\r\nContent-Disposition: form-data; name=\"field\""
            b"\r\n\r\nfrom-a\r\n--" + boundary + b"--\r\n")
    return body, b"multipart/form-data; boundary=" + boundary


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_interleaved_clients_never_see_each_others_request(
        worker_servers: PerImpl, certs: dict[str, str], proto: str) -> None:
    worker_server = worker_servers[impl_of(proto)]
    """A sends everything a request can carry and leaves state behind; B, interleaved with
    it on the same worker, must see only its own bare request."""

    async def client_a(c: ProtocolClient, n: int) -> list[str]:
        tmp_names = []
        for i in range(n):
            body, ctype = multipart(b"a's upload %d" % i)
            g = await get_json(c, f"/a?case=globals&who=a&i={i}", body=body, headers=[
                (b"content-type", ctype), (b"cookie", b"session_of=a"),
                (b"x-tenant", b"tenant-a"), (b"authorization", b"Basic YTpzZWNyZXQ=")])
            assert g["get"] == {"case": "globals", "who": "a", "i": str(i)}
            assert g["post"] == {"field": "from-a"} and g["cookie"] == {"session_of": "a"}
            assert g["files"]["file"]["size"] == len(b"a's upload %d" % i)
            assert g["files"]["file"]["uploaded"] is True
            assert g["server"]["HTTP_X_TENANT"] == "tenant-a"
            tmp_names.append(g["files"]["file"]["tmp_name"])
            r = await c.request("GET", f"/a?case=dirty&secret=a{i}",
                                headers=[(b"cookie", b"session_of=a")])
            assert r.status == 201 and r.header(b"x-leak") == b"1"
        return tmp_names

    async def client_b(c: ProtocolClient, n: int) -> None:
        for _ in range(n):
            g = await get_json(c, "/b?case=globals")
            assert g["get"] == {"case": "globals"}
            assert (g["post"], g["cookie"], g["files"], g["session"]) == ([], [], [], None)
            assert not any(k.startswith("HTTP_X_TENANT") for k in g["server"])
            assert g["server"]["REQUEST_METHOD"] == "GET" and g["input"] == ""
            assert g["status"] == 200 and g["last_error"] is None
            assert not any(h.startswith("X-Leak") for h in g["headers"])
            r = await c.request("GET", "/b?case=state")
            assert r.status == 200 and r.header(b"x-leak") is None
            assert r.header(b"set-cookie") is None

    async def go() -> list[str]:
        a = make_client(proto, worker_server.port, certs["ca"])
        b = make_client(proto, worker_server.port, certs["ca"])
        try:
            names, _ = await asyncio.gather(client_a(a, 15), client_b(b, 15))
            return list(names)
        finally:
            await a.close()
            await b.close()

    for name in run(go()):
        assert not os.path.exists(name), f"upload {name} outlived its request"


@pytest.mark.parametrize(("proto", "case", "status"), [
    ("h1", "memory", 500), ("h2", "compile", 500), ("h3", "memory", 500),
    ("h1", "exit", 302), ("h2", "exit", 302),
])
def test_a_crash_answers_and_restarts_the_script(worker_server: Server, certs: dict[str, str],
                                                 proto: str, case: str, status: int) -> None:
    async def go(c: ProtocolClient) -> None:
        before = await get_json(c, "/?case=state")
        r = await c.request("GET", f"/?case={case}")
        assert r.status == status, r.body
        if case == "exit":  # exit() keeps what the handler sent, as in classic mode
            assert (r.header(b"location"), r.body) == (b"/elsewhere", b"bye")
        after = await get_json(c, "/?case=state")
        assert after["boot"] != before["boot"] and after["count"] == 1

    run(with_client(worker_server, certs, proto, go))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_an_uncaught_exception_is_500_and_the_worker_goes_on(
        worker_servers: PerImpl, certs: dict[str, str], proto: str) -> None:
    worker_server = worker_servers[impl_of(proto)]
    async def go(c: ProtocolClient) -> None:
        before = await get_json(c, "/?case=state")
        r = await c.request("GET", "/?case=throw")
        assert r.status == 500
        after = await get_json(c, "/?case=state")
        assert (after["boot"], after["count"]) == (before["boot"], before["count"] + 1)

    run(with_client(worker_server, certs, proto, go))
    assert "Uncaught RuntimeException: boom from the handler" in worker_server.logs()


def test_request_timeout_is_504_and_restarts_the_script(worker_server: Server,
                                                        certs: dict[str, str]) -> None:
    async def go(c: ProtocolClient) -> None:
        before = await get_json(c, "/?case=state")
        started = time.monotonic()
        r = await c.request("GET", "/?case=sleep&ms=10000")  # REQUEST_TIMEOUT is 4 s
        assert r.status == 504 and time.monotonic() - started < 8
        after = await get_json(c, "/?case=state")
        assert after["boot"] != before["boot"]

    run(with_client(worker_server, certs, "h2", go))


def test_worker_max_requests_restarts_the_script(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--worker-script",
                     str(docroot / "worker.php"), "--worker-max-requests", "3")
    try:
        states = [json.loads(curl(f"{s.url}/?case=state").stdout) for _ in range(7)]
        assert [st["count"] for st in states] == [1, 2, 3, 1, 2, 3, 1]
        assert len({st["boot"] for st in states}) == 3
        assert s.logs().count("worker loop left after 3 requests") >= 2
    finally:
        s.stop()


def test_php_max_requests_replaces_classic_threads(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--php-max-requests", "3")
    try:
        hits = [curl(f"{s.url}/persistent.php").stdout for _ in range(7)]
        # the persistent connection died with its thread every 3 requests
        assert hits == [b"1", b"2", b"3", b"1", b"2", b"3", b"1"]
    finally:
        s.stop()


def test_php_max_requests_reboots_the_worker_on_a_new_thread(tmp_path: Path,
                                                            docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--worker-script",
                     str(docroot / "worker.php"), "--php-max-requests", "2")
    try:
        states = [json.loads(curl(f"{s.url}/?case=state").stdout) for _ in range(5)]
        assert [st["count"] for st in states] == [1, 2, 1, 2, 1]
    finally:
        s.stop()


def test_drain_lets_the_worker_finish_and_leave_its_loop(tmp_path: Path,
                                                          docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--worker-script",
                     str(docroot / "worker.php"))
    try:
        mark = tmp_path / "running"

        async def go() -> Reply:
            client = _PlainH1(s.port)
            slow = asyncio.create_task(
                client.get(f"/?case=sleep&ms=1500&tag=drained&mark={mark}"))
            for _ in range(200):  # the stop comes while the request runs, however loaded
                if mark.exists():
                    break
                await asyncio.sleep(0.05)
            s.proc.send_signal(signal.SIGTERM)
            return await slow

        r = run(go())
        assert (r.status, r.body) == (200, b"slept drained")
        assert s.proc.wait(20) == 0
        assert "worker loop left after 1 requests" in s.logs()
    finally:
        s.stop()


class _PlainH1:
    """GET over cleartext HTTP/1.1 on its own connection."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def get(self, path: str) -> Reply:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return Reply(status, [], body)


def test_a_script_that_cannot_boot_is_reported_not_spun(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--worker-script",
                     str(docroot / "worker_broken.php"), internal=True)
    try:
        deadline = time.monotonic() + 15
        while "failed 6 times in a row" not in s.logs():
            assert time.monotonic() < deadline, s.logs()
            time.sleep(0.1)
        r = curl("-i", f"{s.url}/?case=state")
        assert r.stdout.startswith(b"HTTP/1.1 503"), r.stdout
        assert b"worker script is failing to start" in r.stdout
        health = curl("-s", "-o", "/dev/null", "-w", "%{http_code}",
                      f"http://127.0.0.1:{s.internal_port}/health")
        assert health.stdout == b"503"
        assert s.logs().count("cannot boot: the database is unreachable") == 6  # no spinning
        time.sleep(1.5)
        assert s.logs().count("cannot boot: the database is unreachable") == 6
    finally:
        s.stop()
