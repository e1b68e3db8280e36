"""Prometheus metrics for the whole server, whichever worker process answers the scrape.

Each worker counts in plain Python objects (`RequestMetrics`: a dict increment and a
histogram bisect per request; the PHP pool and the servers' states keep their own
counters), and writes a snapshot of everything to its own file in the metrics directory
every FLUSH_SECONDS and when it stops. A scrape of INTERNAL_ADDR is answered by one worker:
it takes its own values live and every other worker's from its last snapshot (at most
FLUSH_SECONDS old), sums them and renders them with prometheus-client.

Counters never go backwards: the supervisor makes the directory once and keeps it for its
lifetime, and a dead worker's last snapshot stays in it, so its counts are still added
after its replacement starts from zero. Gauges (in flight, threads busy, memory) are taken
from live workers only, the newest snapshot of each worker index. prometheus-client's own
multiprocess mode would write a memory-mapped file on every increment (3 to 5 µs each,
measured): too dear for a request path that costs about 60 µs in all.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.observability.histogram import LATENCY_BUCKETS, Histogram
from gateway.pids import alive

if TYPE_CHECKING:
    import asyncio

    from gateway.php.pool import PhpPool, PoolStats
    from gateway.server.state import ServerState

FLUSH_SECONDS = 1.0
ERRORS_KEPT = 20
PREFIX = "php_gateway_"
# methods counted by name; anything else is "other" (a client must not mint label values)
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                    "OPTIONS", "CONNECT", "TRACE")}
_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # without the prefix, and without _total for counters
    kind: str  # counter, gauge, histogram
    help: str
    labels: tuple[str, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family("requests", "counter", "HTTP requests answered", ("method", "code", "protocol")),
    Family("request_duration_seconds", "histogram",
           "Time from a request's head to the end of its answer, by kind: php, static, "
           "internal or error", ("protocol", "kind")),
    Family("request_body_bytes", "counter", "Request body bytes received", ("protocol",)),
    Family("response_body_bytes", "counter", "Response body bytes sent", ("protocol",)),
    Family("requests_in_flight", "gauge", "Requests being answered now"),
    Family("open_connections", "gauge", "Client connections open now", ("protocol",)),
    Family("connections_refused", "counter",
           "Connections closed at once because MAX_CONNECTIONS was reached"),
    Family("tls_handshake_failures", "counter",
           "TLS handshakes that failed or timed out (tcp: HTTPS, quic: HTTP/3)",
           ("transport",)),
    Family("rate_limited", "counter", "Requests refused with 429 by RATE_LIMIT"),
    Family("php_threads", "gauge", "PHP threads configured"),
    Family("php_threads_alive", "gauge", "PHP threads serving"),
    Family("php_threads_busy", "gauge", "PHP threads running a request"),
    Family("php_queue_depth", "gauge", "Requests waiting for a PHP thread"),
    Family("php_queue_wait_seconds", "histogram", "Time a PHP request waited for a thread"),
    Family("php_execution_seconds", "histogram", "Time a PHP thread spent on a request"),
    Family("php_requests", "counter", "PHP requests completed"),
    Family("php_fatal_errors", "counter", "PHP requests ended by a fatal error"),
    Family("php_timeouts", "counter", "PHP requests stopped by REQUEST_TIMEOUT"),
    Family("php_rejected", "counter",
           "Requests answered 503 because every PHP thread was busy and the queue full"),
    Family("sse_streams", "gauge", "Server-Sent Events responses open now"),
    Family("worker_processes", "gauge", "Worker processes serving"),
    Family("process_resident_memory_bytes", "gauge", "Resident memory of the worker processes"),
    Family("process_cpu_seconds", "counter", "CPU time (user + system) of the worker processes"),
)
_BY_NAME = {f.name: f for f in FAMILIES}


class RequestMetrics:
    """What the observing middleware counts, per request, in one worker process."""

    __slots__ = ("bytes_in", "bytes_out", "durations", "errors", "rate_limited", "requests")

    def __init__(self) -> None:
        # the last server errors (5xx), newest last, for /status
        self.errors: deque[dict[str, Any]] = deque(maxlen=ERRORS_KEPT)
        self.requests: dict[tuple[str, int, str], int] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.rate_limited = 0

    def request(self, method: bytes, status: int, version: str, kind: str, seconds: float,
                received: int, sent: int) -> None:
        protocol = _PROTOCOLS.get(version, version)
        key = (_METHODS.get(method, "other"), status, protocol)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.durations.get((protocol, kind))  # _observe() inline: a frame less
        if hist is None:
            hist = self.durations[(protocol, kind)] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)
        if received:
            self.bytes_in[protocol] = self.bytes_in.get(protocol, 0) + received
        if sent:
            self.bytes_out[protocol] = self.bytes_out.get(protocol, 0) + sent
        if status == 429 and kind != "php":
            self.rate_limited += 1

    def server_error(self, method: bytes, uri: str, status: int, request_id: str) -> None:
        self.errors.append({"time": time.time(), "method": method.decode("latin-1"),
                            "uri": uri[:200], "status": status, "request_id": request_id})

    def observe(self, version: str, kind: str, seconds: float) -> None:
        """A duration alone (the internal server's requests are timed, not counted)."""
        self._observe(_PROTOCOLS.get(version, version), kind, seconds)

    def _observe(self, protocol: str, kind: str, seconds: float) -> None:
        hist = self.durations.get((protocol, kind))
        if hist is None:
            hist = self.durations[(protocol, kind)] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)


# ---------------------------------------------------------------- one process's snapshot

Series = list[Any]  # [labels dict, value] or [labels dict, bounds, counts, sum]


class Snapshot:
    """Every family's series of one worker process, as JSON-able lists."""

    def __init__(self, pid: int, worker: int) -> None:
        self.pid = pid
        self.worker = worker
        self.time = time.time()
        self.series: dict[str, list[Series]] = {}
        self.status: dict[str, Any] = {}  # what /status shows of the process

    def add(self, name: str, value: float, **labels: str) -> None:
        self.series.setdefault(name, []).append([labels, value])

    def add_histogram(self, name: str, hist: Histogram, **labels: str) -> None:
        self.series.setdefault(name, []).append([labels, list(hist.bounds), list(hist.counts),
                                                 hist.sum])

    def to_json(self) -> bytes:
        return json.dumps({"pid": self.pid, "worker": self.worker, "time": self.time,
                           "series": self.series, "status": self.status},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        raw = json.loads(data)
        snap = cls(int(raw["pid"]), int(raw["worker"]))
        snap.time = float(raw["time"])
        snap.series = raw["series"]
        snap.status = raw.get("status", {})
        return snap


def process_usage() -> tuple[int, float]:
    """(resident bytes, CPU seconds) of this process."""
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * _PAGE
    except OSError:
        rss = 0
    t = os.times()
    return rss, t.user + t.system


# ---------------------------------------------------------------- summing the processes


def read_snapshots(directory: Path, skip_pid: int) -> list[Snapshot]:
    out: list[Snapshot] = []
    for path in directory.glob("worker-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            snap = Snapshot.from_json(path.read_bytes())
            if snap.pid != skip_pid:
                out.append(snap)
    return out


def live_snapshots(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """The newest snapshot of each worker index, if its process is alive."""
    newest: dict[int, Snapshot] = {}
    for snap in snapshots:
        if snap.worker not in newest or snap.time > newest[snap.worker].time:
            newest[snap.worker] = snap
    return sorted((s for s in newest.values() if s.pid == os.getpid() or alive(s.pid)),
                  key=lambda s: s.worker)


def merge(snapshots: Iterable[Snapshot]) -> list[Metric]:
    """The Prometheus families: counters and histograms summed over every snapshot, gauges
    over the newest snapshot of each worker index whose process is alive."""
    snaps = list(snapshots)
    live = {id(s) for s in live_snapshots(snaps)}
    sums: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {f.name: {} for f in FAMILIES}
    for snap in snaps:
        for name, series in snap.series.items():
            family = _BY_NAME.get(name)
            if family is None or (family.kind == "gauge" and id(snap) not in live):
                continue
            acc = sums[name]
            for item in series:
                key = tuple(sorted(item[0].items()))
                if family.kind == "histogram":
                    bounds, counts, total = item[1], item[2], item[3]
                    prev = acc.get(key)
                    if prev is None:
                        acc[key] = [list(bounds), list(counts), total]
                    elif prev[0] == bounds:
                        prev[1] = [a + b for a, b in zip(prev[1], counts, strict=True)]
                        prev[2] += total
                else:
                    acc[key] = acc.get(key, 0) + item[1]
    sums["worker_processes"][()] = len(live)
    return list(_families(sums))


def _families(sums: dict[str, dict[tuple[tuple[str, str], ...], Any]]) -> Iterator[Metric]:
    for family in FAMILIES:
        name = PREFIX + family.name
        labels = list(family.labels)
        metric: Metric
        if family.kind == "counter":
            metric = CounterMetricFamily(name, family.help, labels=labels)
        elif family.kind == "gauge":
            metric = GaugeMetricFamily(name, family.help, labels=labels)
        else:
            metric = HistogramMetricFamily(name, family.help, labels=labels)
        for key, value in sorted(sums[family.name].items()):
            label_map = dict(key)
            values = [label_map.get(label, "") for label in labels]
            if family.kind == "histogram":
                assert isinstance(metric, HistogramMetricFamily)
                bounds, counts, total = value
                buckets: list[tuple[str, float]] = []
                running = 0
                for bound, count in zip([*bounds, float("inf")], counts, strict=True):
                    running += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)),
                                    running))
                metric.add_metric(values, buckets, total)
            else:
                assert isinstance(metric, (CounterMetricFamily, GaugeMetricFamily))
                metric.add_metric(values, value)
        yield metric


class _Families(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def exposition(metrics: list[Metric]) -> bytes:
    """Prometheus text format, by prometheus-client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(metrics))
    return generate_latest(registry)


# ---------------------------------------------------------------- one worker process


class WorkerMetrics:
    """A worker's counters, its snapshot file and the answer to a scrape."""

    def __init__(self, directory: Path, worker: int, pool: PhpPool,
                 requests: RequestMetrics | None) -> None:
        self.directory = directory
        self.worker = worker
        self.pool = pool
        self.requests = requests  # None: METRICS=off, the snapshot carries the status only
        self.started = time.time()
        # the public listeners' states, with "tcp" or "quic", once they are started
        self.states: list[tuple[ServerState, str]] = []
        self.pid = os.getpid()
        self.path = directory / f"worker-{worker}-{self.pid}.json"
        self._timer: asyncio.TimerHandle | None = None
        self._stats: PoolStats | None = None

    def snapshot(self) -> Snapshot:
        from gateway.observability.status import process_status

        snap = Snapshot(self.pid, self.worker)
        snap.status = process_status(self.pool, self.requests, self.started)
        req = self.requests
        if req is None:
            return snap
        for (method, status, protocol), n in req.requests.items():
            snap.add("requests", n, method=method, code=str(status), protocol=protocol)
        for (protocol, kind), hist in req.durations.items():
            snap.add_histogram("request_duration_seconds", hist, protocol=protocol, kind=kind)
        # a series from the first request of a protocol on, zero until bytes come
        for protocol in {p for _, _, p in req.requests}:
            snap.add("request_body_bytes", req.bytes_in.get(protocol, 0), protocol=protocol)
            snap.add("response_body_bytes", req.bytes_out.get(protocol, 0), protocol=protocol)
        snap.add("rate_limited", req.rate_limited)
        self._add_servers(snap)
        pool = self.pool
        if pool.started:
            self._stats = pool.stats()
        s = self._stats  # after pool.stop(), the last counts: a counter must not drop
        if s is not None:
            for name, value in (("php_threads", s.threads), ("php_threads_alive", s.threads_alive),
                                ("php_threads_busy", s.busy), ("php_queue_depth", s.queued),
                                ("php_requests", s.requests), ("php_rejected", s.rejected)):
                snap.add(name, value)
        snap.add("php_fatal_errors", pool.fatals)
        snap.add("php_timeouts", pool.timeouts)
        snap.add("sse_streams", pool.sse_streams)
        snap.add_histogram("php_queue_wait_seconds", pool.wait_seconds)
        snap.add_histogram("php_execution_seconds", pool.run_seconds)
        rss, cpu = process_usage()
        snap.add("process_resident_memory_bytes", rss)
        snap.add("process_cpu_seconds", cpu)
        return snap

    def _add_servers(self, snap: Snapshot) -> None:
        in_flight = 0
        conns = {"HTTP/1.1": 0, "HTTP/2": 0, "HTTP/3": 0}
        failures = {"tcp": 0, "quic": 0}
        refused = 0
        for state, transport in self.states:
            in_flight += state.active_requests
            if transport == "quic":
                conns["HTTP/3"] += len(state.connections)
                failures["quic"] += state.tls_handshake_failures
            else:
                conns["HTTP/2"] += state.http2_connections
                conns["HTTP/1.1"] += len(state.connections) - state.http2_connections
                failures["tcp"] += state.tls_handshake_failures
            refused = state.limit.refused  # one limit per process, shared by its listeners
        snap.add("requests_in_flight", in_flight)
        for protocol, n in conns.items():
            snap.add("open_connections", n, protocol=protocol)
        for transport, n in failures.items():
            snap.add("tls_handshake_failures", n, transport=transport)
        snap.add("connections_refused", refused)

    def flush(self) -> None:
        """Writes the snapshot file (atomically: a scrape never reads half of one)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_bytes(self.snapshot().to_json())
            os.replace(tmp, self.path)
        except OSError:
            pass  # the directory is gone (the supervisor is stopping): nothing to keep

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush()

        def tick() -> None:
            self.flush()
            self._timer = loop.call_later(FLUSH_SECONDS, tick)

        self._timer = loop.call_later(FLUSH_SECONDS, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def all_snapshots(self) -> list[Snapshot]:
        """This process's, live, and every other's last one."""
        return [self.snapshot(), *read_snapshots(self.directory, self.pid)]

    def scrape(self) -> bytes:
        return exposition(merge(self.all_snapshots()))
