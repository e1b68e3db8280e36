"""What the observability tests share: scraping /metrics into numbers, fresh-connection
requests, the server's JSON log records, waiting for the metrics snapshots."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from server_harness import Server

FLUSH = 1.0  # gateway.observability.metrics.FLUSH_SECONDS: other processes' snapshot age

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[Samples, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode()
        assert r.status == 200, text
        assert r.getheader("content-type", "").startswith("text/plain; version=")
    finally:
        conn.close()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET", body: bytes | None = None,
        timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def records(s: Server, **match: Any) -> list[dict[str, Any]]:
    """The server's JSON log records with these field values."""
    out = []
    for line in s.logs().splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if all(record.get(k) == v for k, v in match.items()):
            out.append(record)
    return out


def wait_for(check: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def settle() -> None:
    """Every worker process has written a snapshot since the requests before this call."""
    time.sleep(FLUSH + 0.4)
