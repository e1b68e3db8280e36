"""The request lifecycle on the real server: answers the server makes itself pass the chain
(the access log sees a malformed request), and requests abandoned as soon as they are made
leave nothing behind that would hold a drain."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from aioquic.h3.connection import ErrorCode
from h3_client import h3_client
from server_harness import raw_connection, start_server

pytestmark = pytest.mark.e2e


def access_lines(log: str) -> list[dict[str, object]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "request":
                lines.append(entry)
    return lines


def test_malformed_http1_request_is_in_the_access_log(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--access-log", internal=True)
    try:
        for port in (s.port, s.internal_port):  # the internal server answers it alike
            assert port is not None
            with raw_connection(port) as sock:
                sock.sendall(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            assert raw.startswith(b"HTTP/1.1 400 ")
            assert raw.endswith(b"\r\n\r\n400 Bad Request\n")
        with raw_connection(s.port) as sock:
            sock.sendall(b"GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
        deadline = time.monotonic() + 5
        while len(access_lines(s.logs())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        bad, good = access_lines(s.logs())
        assert (bad["status"], bad["bytes_sent"], bad["protocol"]) == (400, 16, "HTTP/1.1")
        assert (good["status"], good["uri"]) == (200, "/hello.php")
    finally:
        s.stop()


def test_http3_streams_reset_at_once_do_not_hold_the_drain(
    tmp_path: Path, docroot: Path, certs: dict[str, str]
) -> None:
    s = start_server(tmp_path, docroot, tls=(certs["cert"], certs["key"]))

    async def run() -> int:
        async with h3_client(s.port, certs["ca"]) as client:
            sids = [client.start_request("POST", "/echo_input.php", end=False)[0]
                    for _ in range(60)]  # bodies never come: the apps wait for them
            for sid in sids:
                client.reset(sid, ErrorCode.H3_REQUEST_CANCELLED)
            ok = await client.request("GET", "/hello.php")
            return ok.status

    try:
        assert asyncio.run(run()) == 200
        started = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(10) == 0
        assert time.monotonic() - started < 2.0
    finally:
        if s.proc.poll() is None:
            s.stop()
