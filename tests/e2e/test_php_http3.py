"""HTTP/3 through the real php-gateway: same routing, PHP pool and $_SERVER as TCP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from h3_client import h3_client
from server_harness import Server, curl, free_tcp_udp_port, start_server

pytestmark = pytest.mark.e2e


def test_tcp_responses_advertise_h3(tls_server: Server, certs: dict[str, str]) -> None:
    for flag in ["--http1.1", "--http2"]:
        r = curl("-sI", flag, "--cacert", certs["ca"], f"{tls_server.url}/hello.php")
        assert f'alt-svc: h3=":{tls_server.port}"'.encode() in r.stdout.lower(), r.stdout


def test_php_over_h3(tls_server: Server, certs: dict[str, str]) -> None:
    async def run() -> None:
        async with h3_client(tls_server.port, certs["ca"]) as client:
            r = await client.request("GET", "/server.php/tail?q=1",
                                     headers=[(b"x-probe", b"h3")])
            assert r.status == 200
            s = json.loads(r.body)["server"]
            assert s["SERVER_PROTOCOL"] == "HTTP/3.0"
            assert s["HTTPS"] == "on" and s["REQUEST_SCHEME"] == "https"
            assert s["HTTP_HOST"] == "127.0.0.1"  # from :authority
            assert s["HTTP_X_PROBE"] == "h3"
            assert s["PATH_INFO"] == "/tail" and s["QUERY_STRING"] == "q=1"
            r = await client.request("GET", "/fail.php?kind=fatal")
            assert r.status == 500
            r = await client.request("GET", "/.env")
            assert r.status == 404
            r = await client.request("GET", "/static.txt")
            assert (r.status, r.body) == (200, b"plain static text\n")

    asyncio.run(run())


def test_h3_ten_megabytes_each_way(tls_server: Server, certs: dict[str, str]) -> None:
    upload = os.urandom(10 * 1024 * 1024)

    async def run() -> None:
        async with h3_client(tls_server.port, certs["ca"]) as client:
            down, up = await asyncio.gather(
                client.request("GET", "/big.php?kb=10240"),
                client.request("PUT", "/echo_input.php", body=upload,
                               headers=[(b"content-type", b"application/octet-stream")]),
            )
            assert down.status == 200
            assert hashlib.sha256(down.body).hexdigest() == hashlib.sha256(
                bytes(range(256)) * 32 * 1280).hexdigest()
            assert json.loads(up.body) == {"length": len(upload), "method": "PUT",
                                           "sha256": hashlib.sha256(upload).hexdigest()}

    asyncio.run(run())


def test_h3_streaming_arrives_incrementally(tls_server: Server, certs: dict[str, str]) -> None:
    async def run() -> None:
        async with h3_client(tls_server.port, certs["ca"]) as client:
            stream_id, future = client.start_request("GET", "/stream.php?n=5&ms=200")
            seen = []
            while not future.done():
                seen.append(client.received(stream_id))
                await asyncio.sleep(0.05)
            r = await future
            assert r.body.count(b"\n") == 5
            # bytes were arriving while the script still ran
            partial = [n for n in seen if 0 < n < len(r.body)]
            assert len(set(partial)) >= 3, seen

    asyncio.run(run())


def test_gtlsclient_against_php(tls_server: Server, tmp_path: Path) -> None:
    if shutil.which("gtlsclient") is None:
        pytest.fail("gtlsclient is not installed (ngtcp2-client)")
    out = subprocess.run(
        ["gtlsclient", "--exit-on-all-streams-close", "-q", "--download", str(tmp_path),
         "127.0.0.1", str(tls_server.port),
         f"https://127.0.0.1:{tls_server.port}/big.php?kb=2048"],
        capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    downloads = list(tmp_path.iterdir())
    assert len(downloads) == 1, downloads
    assert downloads[0].read_bytes() == bytes(range(256)) * 32 * 256


def _slow_h3_read(server: Server, ca: str, progress: Path, window: int,
                  total_kb: int) -> tuple[int, int, bytes, int]:
    """A client that grants `window` bytes of credit, waits until PHP stops getting further,
    then reads the rest: (bytes PHP had written by then, bytes received, body, status)."""

    def written() -> int:
        text = progress.read_text() if progress.exists() else ""
        return int(text) if text.isdigit() else 0

    async def run() -> tuple[int, int, bytes, int]:
        async with h3_client(server.port, ca, max_stream_data=window,
                             max_data=4 * window) as client:
            client.pause_reading()  # no more MAX_STREAM_DATA / MAX_DATA credit
            sid, response = client.start_request(
                "GET", f"/progress.php?kb={total_kb}&file={progress}")
            seen: list[int] = []
            for _ in range(200):  # until PHP stops getting further
                await asyncio.sleep(0.05)
                seen.append(written())
                if len(seen) >= 10 and seen[-1] > 0 and seen[-1] == seen[-10]:
                    break
            received = client.received(sid)
            client.resume_reading()
            reply = await asyncio.wait_for(response, 60)
            return seen[-1], received, reply.body, reply.status

    return asyncio.run(run())


def test_slow_h3_reader_does_not_hold_the_php_thread(tls_server: Server, certs: dict[str, str],
                                                     tmp_path: Path) -> None:
    """Response buffering (the default): PHP writes all 16 MiB and its thread is free while
    the client has taken one window; then every byte arrives intact."""
    window, total_kb = 64 * 1024, 16 * 1024
    finished, received, body, status = _slow_h3_read(tls_server, certs["ca"],
                                                     tmp_path / "progress", window, total_kb)
    assert finished == total_kb * 1024
    assert received <= window
    block = bytes(range(256)) * 32
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(block * (total_kb // 8)).digest()


def test_slow_h3_reader_holds_php_back_without_buffering(
    tmp_path: Path, docroot: Path, certs: dict[str, str]
) -> None:
    """RESPONSE_BUFFERING=off: PHP gets as far as the client's window plus the gateway's
    bounded buffers, no further, until the client reads."""
    window, total_kb = 64 * 1024, 16 * 1024
    s = start_server(tmp_path, docroot, "--response-buffering", "off",
                     tls=(certs["cert"], certs["key"]))
    try:
        stalled, received, body, status = _slow_h3_read(s, certs["ca"], tmp_path / "progress",
                                                        window, total_kb)
    finally:
        s.stop()
    assert 0 < stalled <= 2 * 1024 * 1024, stalled
    assert received <= window
    block = bytes(range(256)) * 32
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(block * (total_kb // 8)).digest()


def test_plain_listener_beside_tls_advertises_h3(tmp_path: Path, docroot: Path,
                                                 certs: dict[str, str]) -> None:
    tls_port = free_tcp_udp_port()
    s = start_server(tmp_path, docroot, "--tls-listen-addr", f"127.0.0.1:{tls_port}",
                     "--tls-cert", certs["cert"], "--tls-key", certs["key"])
    try:
        plain = curl("-sI", f"http://127.0.0.1:{s.port}/hello.php")
        tls = curl("-sI", "--cacert", certs["ca"], f"https://127.0.0.1:{tls_port}/hello.php")
        for r in (plain, tls):
            assert b" 200" in r.stdout.split(b"\r\n", 1)[0], r.stdout
            assert f'alt-svc: h3=":{tls_port}"'.encode() in r.stdout.lower(), r.stdout
    finally:
        s.stop()


def test_sigterm_drains_http3(tmp_path: Path, docroot: Path, certs: dict[str, str]) -> None:
    """SIGTERM on the real server: the PHP request in flight over HTTP/3 completes, then
    the QUIC connection is closed (after GOAWAY) and the server exits cleanly."""
    s = start_server(tmp_path, docroot, tls=(certs["cert"], certs["key"]))

    async def run() -> tuple[int, bytes, bool]:
        async with h3_client(s.port, certs["ca"]) as client:
            _, pending = client.start_request("GET", "/sleep.php?s=1")
            await asyncio.sleep(0.3)  # the script is running
            s.proc.send_signal(signal.SIGTERM)
            reply = await asyncio.wait_for(pending, 15)
            for _ in range(200):
                if client.terminated is not None:
                    break
                await asyncio.sleep(0.05)
            return reply.status, reply.body, client.terminated is not None

    try:
        status, body, closed = asyncio.run(run())
        assert (status, body) == (200, b"slept 1")
        assert closed, "the server did not close the QUIC connection after draining"
        assert s.proc.wait(20) == 0
    finally:
        if s.proc.poll() is None:
            s.stop()


def test_http3_can_be_switched_off(tmp_path: Path, docroot: Path, certs: dict[str, str]) -> None:
    s = start_server(tmp_path, docroot, "--http3", "off", tls=(certs["cert"], certs["key"]))
    try:
        r = curl("-sI", "--cacert", certs["ca"], f"{s.url}/hello.php")
        assert r.stdout.startswith(b"HTTP/2 200") or r.stdout.startswith(b"HTTP/1.1 200")
        assert b"alt-svc" not in r.stdout.lower()
    finally:
        s.stop()


def test_h3_with_two_worker_processes(tmp_path: Path, docroot: Path,
                                      certs: dict[str, str]) -> None:
    """Each QUIC connection stays in one process (one SO_REUSEPORT socket per worker)."""
    s = start_server(tmp_path, docroot, "--processes", "2", tls=(certs["cert"], certs["key"]),
                     workers_ready=2)
    try:
        async def one() -> bytes:
            async with h3_client(s.port, certs["ca"]) as client:
                rs = await asyncio.gather(*[client.request("GET", "/hello.php")
                                            for _ in range(5)])
                assert all(r.status == 200 for r in rs)
                return rs[0].body

        async def many() -> list[bytes]:
            return await asyncio.gather(*[one() for _ in range(12)])

        assert asyncio.run(many()) == [b"Hello, World!"] * 12
    finally:
        s.stop()


def test_gtlsclient_php_download_with_loss(tls_server: Server, tmp_path: Path) -> None:
    """5% packet loss each way, a 4 MB PHP response still arrives byte for byte."""
    if shutil.which("gtlsclient") is None:
        pytest.fail("gtlsclient is not installed (ngtcp2-client)")
    out = subprocess.run(
        ["gtlsclient", "--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump",
         "--tx-loss=0.05", "--rx-loss=0.05", "--download", str(tmp_path),
         "127.0.0.1", str(tls_server.port),
         f"https://127.0.0.1:{tls_server.port}/big.php?kb=4096"],
        capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert log.count("** Simulated incoming packet loss **") > 20
    assert log.count("** Simulated outgoing packet loss **") > 2
    downloads = list(tmp_path.iterdir())
    assert len(downloads) == 1
    assert downloads[0].read_bytes() == bytes(range(256)) * 32 * 512
