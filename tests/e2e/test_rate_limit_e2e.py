"""RATE_LIMIT against the real server: one limit across worker processes, the fields of a
429, a smooth refill with RATE_BURST, IPv6 keyed by /64 (through a trusted proxy), a 429
that runs no PHP and no router, and an internal server that is never limited."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import pytest
from server_harness import Server, curl, start_server

pytestmark = pytest.mark.e2e


def get(server: Server, path: str, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (the kernel picks the worker process anew)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def metric(server: Server, name: str) -> float:
    assert server.internal_port is not None
    text = curl(f"http://127.0.0.1:{server.internal_port}/metrics").stdout.decode()
    match = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_one_limit_across_two_processes(tmp_path: Path, docroot: Path) -> None:
    """The issue's test: 100 requests on new connections, RATE_LIMIT=40, PROCESSES=2."""
    s = start_server(tmp_path, docroot, "--processes", "2", env={"RATE_LIMIT": "40"},
                     workers_ready=2)
    try:
        results = [get(s, "/pid.php") for _ in range(100)]
    finally:
        s.stop()
    passed = [body for status, _, body in results if status == 200]
    refused = [headers for status, headers, _ in results if status == 429]
    assert 39 <= len(passed) <= 41, len(passed)
    assert len(passed) + len(refused) == 100
    assert len(set(passed)) == 2, "both worker processes must have served: one shared limit"
    assert all(h["retry-after"].isdigit() and int(h["retry-after"]) >= 1 for h in refused)


def test_429_fields_no_php_and_internal_never_limited(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, env={"RATE_LIMIT": "3", "RATE_WINDOW": "3600"},
                     internal=True)
    try:
        answers = [get(s, "/hello.php") for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert [h["x-ratelimit-remaining"] for _, h, _ in answers] == ["2", "1", "0"]
        assert [h["ratelimit"] for _, h, _ in answers] == [
            '"default";r=2;t=1200', '"default";r=1;t=2400', '"default";r=0;t=3600']
        status, headers, body = get(s, "/hello.php")
        assert (status, body) == (429, b"429 Too Many Requests\n")
        assert headers["retry-after"] == "1200"  # one interval: 3600 s / 3
        assert headers["ratelimit-policy"] == '"default";q=3;w=3600'
        assert headers["ratelimit"] == '"default";r=0;t=3600'
        assert (headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"],
                headers["x-ratelimit-reset"]) == ("3", "0", "3600")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        # refused before routing: a missing page is 429 too, and PHP ran only 3 times
        assert get(s, "/no/such/page")[0] == 429
        assert metric(s, "php_gateway_php_requests") == 3
        # a browser gets the 429 page, with the same fields
        status, headers, body = get(s, "/hello.php", {"Accept": "text/html"})
        assert status == 429 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"429" in body and headers["content-length"] == str(len(body))
        assert headers["retry-after"] == "1200"
        for _ in range(10):  # the internal server has its own app: never limited
            r = curl("-o", "/dev/null", "-w", "%{http_code}",
                     f"http://127.0.0.1:{s.internal_port}/health")
            assert r.stdout == b"200"
    finally:
        s.stop()


def test_smooth_refill_with_burst(tmp_path: Path, docroot: Path) -> None:
    """RATE_LIMIT=4 per 2 s: one request every 0.5 s, RATE_BURST=2 at once; no window edge."""
    s = start_server(tmp_path, docroot, env={"RATE_LIMIT": "4", "RATE_WINDOW": "2",
                                             "RATE_BURST": "2"})
    try:
        assert [get(s, "/static.txt")[0] for _ in range(3)] == [200, 200, 429]
        time.sleep(0.6)  # one interval: room for exactly one more
        assert [get(s, "/static.txt")[0] for _ in range(2)] == [200, 429]
        time.sleep(1.1)  # two intervals: the burst is back, never more
        assert [get(s, "/static.txt")[0] for _ in range(3)] == [200, 200, 429]
    finally:
        s.stop()


def test_ipv6_clients_are_keyed_by_their_64(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--trusted-proxies", "127.0.0.1",
                     env={"RATE_LIMIT": "2", "RATE_WINDOW": "3600"})
    try:
        def status(client: str) -> int:
            return get(s, "/static.txt", {"X-Forwarded-For": client})[0]

        assert status("2001:db8:1:2::1") == 200
        assert status("2001:db8:1:2:ffff::99") == 200  # same /64: same allowance
        assert status("2001:db8:1:2::abcd") == 429
        assert status("2001:db8:1:3::1") == 200  # the next /64 is another client
        assert status("198.51.100.1") == 200 and status("198.51.100.2") == 200
        assert get(s, "/static.txt")[0] == 200  # the proxy itself is its own client
    finally:
        s.stop()


def test_a_flood_of_addresses_does_not_lock_out_tracked_clients(tmp_path: Path,
                                                                 docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--trusted-proxies", "127.0.0.1",
                     env={"RATE_LIMIT": "2", "RATE_WINDOW": "3600",
                          "RATE_LIMIT_MAX_CLIENTS": "64"})
    try:
        def status(client: str) -> int:
            return get(s, "/static.txt", {"X-Forwarded-For": client})[0]

        assert [status("192.0.2.1") for _ in range(3)] == [200, 200, 429]
        assert status("192.0.2.2") == 200
        flood = [status(f"10.{i // 250}.{i % 250}.1") for i in range(1000)]
        assert flood == [200] * 1000  # every newcomer has a place, the table a fixed size
        assert status("192.0.2.1") == 429  # the limited client was not forgotten for them
    finally:
        s.stop()
