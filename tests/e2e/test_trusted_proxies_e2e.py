"""TRUSTED_PROXIES against the real server: what PHP sees ($_SERVER) and what the access log
names, for each forwarding header, a chain of proxies, and spoofing from untrusted peers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import Server, curl, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory, docroot: Path) -> Iterator[Server]:
    """The test client (127.0.0.1) is a trusted proxy, as are 10.0.0.0/8 and 2001:db8:f::/48."""
    s = start_server(tmp_path_factory.mktemp("proxied"), docroot,
                     "--trusted-proxies", "127.0.0.1, 10.0.0.0/8 2001:db8:f::/48",
                     env={"ACCESS_LOG": "1"})
    yield s
    s.stop()


def php_server(server: Server, *headers: str) -> dict[str, Any]:
    args = [a for h in headers for a in ("-H", h)]
    r = curl(*args, f"{server.url}/server.php")
    server_vars: dict[str, Any] = json.loads(r.stdout)["server"]
    return server_vars


def test_x_forwarded_for_and_proto(behind_proxy: Server) -> None:
    s = php_server(behind_proxy, "X-Forwarded-For: 6.6.6.6, 203.0.113.5",
                   "X-Forwarded-Proto: https")
    assert s["REMOTE_ADDR"] == "203.0.113.5"  # not the spoofed leftmost entry
    assert s["REMOTE_PORT"] == ""  # as nginx: no port in the header, none invented
    assert (s["HTTPS"], s["REQUEST_SCHEME"]) == ("on", "https")
    assert s["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.5"  # the header itself is kept
    assert s["SERVER_PORT"] == str(behind_proxy.port)


def test_chain_of_trusted_proxies(behind_proxy: Server) -> None:
    s = php_server(behind_proxy, "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.1.2.3, 10.9.9.9")
    assert s["REMOTE_ADDR"] == "198.51.100.7"
    assert "HTTPS" not in s and s["REQUEST_SCHEME"] == "http"


def test_forwarded_header(behind_proxy: Server) -> None:
    s = php_server(behind_proxy, 'Forwarded: for=6.6.6.6;proto=http, '
                                 'for="[2001:db8:cafe::17]:4711";proto=https, '
                                 'for="[2001:db8:f::1]"', "X-Forwarded-For: 198.51.100.99")
    assert (s["REMOTE_ADDR"], s["REMOTE_PORT"]) == ("2001:db8:cafe::17", "4711")
    assert (s["HTTPS"], s["REQUEST_SCHEME"]) == ("on", "https")


def test_malformed_or_unknown_entries_are_not_believed(behind_proxy: Server) -> None:
    for header in ("X-Forwarded-For: 203.0.113.5, bogus", "Forwarded: for=unknown",
                   "Forwarded: for=_hidden;proto=https"):
        s = php_server(behind_proxy, header)
        assert s["REMOTE_ADDR"] == "127.0.0.1", header
        assert s["REMOTE_PORT"] not in ("", "0")
        assert s["REQUEST_SCHEME"] == "http"


def test_access_log_names_the_resolved_client(behind_proxy: Server) -> None:
    curl("-H", "X-Forwarded-For: 192.0.2.222", f"{behind_proxy.url}/hello.php?log-probe")
    deadline = time.monotonic() + 5  # the line is written just after the answer has left
    while True:
        entries = [json.loads(line) for line in behind_proxy.logs().splitlines()
                   if '"uri": "/hello.php?log-probe"' in line]
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert entries and entries[-1]["client"] == "192.0.2.222"


def test_untrusted_peer_cannot_spoof(tmp_path: Path, docroot: Path) -> None:
    # trusted proxies exist, but the test client is not one of them
    s = start_server(tmp_path, docroot, "--trusted-proxies", "10.0.0.0/8")
    try:
        for header in ("X-Forwarded-For: 203.0.113.5", "Forwarded: for=203.0.113.5;proto=https",
                       "X-Forwarded-Proto: https"):
            v = php_server(s, header)
            assert v["REMOTE_ADDR"] == "127.0.0.1", header
            assert v["REQUEST_SCHEME"] == "http" and "HTTPS" not in v
        assert php_server(s, "X-Forwarded-For: 203.0.113.5")["HTTP_X_FORWARDED_FOR"] == (
            "203.0.113.5")
    finally:
        s.stop()


def test_no_trusted_proxies_by_default(server: Server) -> None:
    v = php_server(server, "X-Forwarded-For: 203.0.113.5", "X-Forwarded-Proto: https",
                   "Forwarded: for=203.0.113.6")
    assert v["REMOTE_ADDR"] == "127.0.0.1" and v["REQUEST_SCHEME"] == "http"
    assert v["HTTP_X_FORWARDED_FOR"] == "203.0.113.5"
