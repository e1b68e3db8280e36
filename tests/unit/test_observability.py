"""The observability pieces without a server: W3C traceparent rules, ids, histograms, how
snapshots of several processes are summed, /config redaction, and the observing
middleware's records for answers made twice (the fallback 500) or never (a client gone).
The real server over real sockets: tests/e2e/test_observability*_e2e.py."""

from __future__ import annotations

import asyncio
import os
import re

import pytest
from fake_context import FakeContext

from gateway.config import load_config
from gateway.observability.histogram import LATENCY_BUCKETS, Histogram
from gateway.observability.internal import redacted_config
from gateway.observability.metrics import RequestMetrics, Snapshot, merge
from gateway.observability.request_record import current_record
from gateway.observability.tracing import Tracing, new_ids, parse_traceparent, valid_request_id
from gateway.pipeline.context import RequestContext
from gateway.pipeline.observe import observe, server_timing

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(("header", "parsed"), [
    (f"00-{TRACE}-{PARENT}-01", (TRACE, PARENT, "01")),
    (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, "00")),
    (f"00-{TRACE}-{PARENT}-09", (TRACE, PARENT, "01")),  # unknown flag bits dropped
    (f"01-{TRACE}-{PARENT}-01-more", (TRACE, PARENT, "01")),  # a later version may add
    (f"01-{TRACE}-{PARENT}-01", (TRACE, PARENT, "01")),
    (f"01-{TRACE}-{PARENT}-01more", None),  # ...but only after a dash
    (f"00-{TRACE}-{PARENT}-01-more", None),  # version 00 is exactly 55 characters
    (f"ff-{TRACE}-{PARENT}-01", None),
    (f"0g-{TRACE}-{PARENT}-01", None),
    (f"00-{TRACE.upper()}-{PARENT}-01", None),
    (f"00-{'0' * 32}-{PARENT}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE[:-1]}-{PARENT}0-01", None),
    ("", None),
])
def test_traceparent(header: str, parsed: tuple[str, str, str] | None) -> None:
    assert parse_traceparent(header.encode()) == parsed


def test_request_ids() -> None:
    assert valid_request_id(b"abc-123_:/.=+")
    for bad in (b"", b"has space", b"x" * 201, b"tab\there", "é".encode()):
        assert not valid_request_id(bad)
    ids = {new_ids() for _ in range(200)}
    assert len(ids) == 200
    for trace, span, rid in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", trace) and re.fullmatch(r"[0-9a-f]{16}", span)
        assert re.fullmatch(r"[0-9a-f]{32}", rid)


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    h = Histogram()
    for v in (0.0005, 0.001, 0.0011, 60.0, 61.0):
        h.observe(v)
    assert h.counts[0] == 2  # le="0.001" holds 0.001 itself
    assert h.counts[1] == 1
    assert h.counts[LATENCY_BUCKETS.index(60.0)] == 1 and h.counts[-1] == 1  # +Inf
    assert h.sum == pytest.approx(0.0005 + 0.001 + 0.0011 + 121.0)


def _snap(pid: int, worker: int, at: float, requests: int, busy: int) -> Snapshot:
    s = Snapshot(pid, worker)
    s.time = at
    s.add("requests", requests, method="GET", code="200", protocol="HTTP/1.1")
    s.add("php_threads_busy", busy)
    h = Histogram()
    h.observe(0.002)
    s.add_histogram("php_execution_seconds", h)
    return s


def _samples(snaps: list[Snapshot]) -> dict[str, float]:
    out = {}
    for family in merge(snaps):
        for sample in family.samples:
            key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


def test_counters_keep_a_dead_workers_counts_gauges_do_not() -> None:
    me = os.getpid()
    dead = 2**22 + 12345  # above pid_max's default: no such process
    merged = _samples([_snap(me, 0, 10.0, 100, 1), _snap(dead, 1, 5.0, 70, 3),
                       _snap(me, 1, 9.0, 30, 2)])  # worker 1 restarted as `me`
    assert merged["php_gateway_requests_total,code=200,method=GET,protocol=HTTP/1.1"] == 200
    assert merged["php_gateway_php_threads_busy"] == 3  # the live ones: 1 + 2, not the dead 3
    assert merged["php_gateway_worker_processes"] == 2
    assert merged["php_gateway_php_execution_seconds_count"] == 3
    assert merged["php_gateway_php_execution_seconds_bucket,le=0.0025"] == 3
    assert merged["php_gateway_php_execution_seconds_bucket,le=0.001"] == 0


def test_snapshots_survive_json() -> None:
    s = _snap(1, 0, 3.0, 5, 1)
    s.status = {"threads": [{"thread": 0, "state": "idle"}]}
    back = Snapshot.from_json(s.to_json())
    assert (back.pid, back.worker, back.time, back.series, back.status) == (
        1, 0, 3.0, s.series, s.status)


def test_methods_outside_the_standard_ones_share_a_label() -> None:
    m = RequestMetrics()
    m.request(b"GET", 200, "2", "php", 0.01, 0, 10)
    m.request(b"BREW", 405, "2", "error", 0.01, 0, 10)
    m.request(b"PROPFIND", 405, "2", "error", 0.01, 5, 10)
    m.request(b"GET", 429, "1.1", "error", 0.001, 0, 0)
    assert m.requests == {("GET", 200, "HTTP/2"): 1, ("other", 405, "HTTP/2"): 2,
                          ("GET", 429, "HTTP/1.1"): 1}
    assert m.rate_limited == 1 and m.bytes_in == {"HTTP/2": 5}
    assert m.durations[("HTTP/2", "error")].counts[LATENCY_BUCKETS.index(0.01)] == 2
    m.observe("1.1", "internal", 0.0001)  # a probe: timed, not counted
    assert m.durations[("HTTP/1.1", "internal")].counts[0] == 1 and len(m.requests) == 3


def test_config_secrets_are_redacted(tmp_path: object) -> None:
    config = load_config(["--document-root", ".", "--php-ini-set", "redis.auth=p4ss",
                          "--php-ini-set", "session.save_path=tcp://u:secret@db:6379",
                          "--php-ini-set", "memory_limit=1G", "--otel-traces-exporter",
                          "otlp", "--otel-exporter-otlp-endpoint", "https://a:b@otel:4318"], {})
    shown = redacted_config(config)
    assert shown["PHP_INI_SET"] == ("redis.auth=<redacted>, session.save_path="
                                    "tcp://<redacted>@db:6379, memory_limit=1G")
    assert shown["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://<redacted>@otel:4318"
    assert list(shown) == [env for env, _ in config.describe()]


# ---------------------------------------------------------------- the middleware


async def _hello(ctx: RequestContext) -> None:
    await ctx.send_response(200, [(b"content-type", b"text/plain")])
    await ctx.send_data(b"hello")
    await ctx.end()


async def _in_task(coro: object) -> None:
    """Each request runs in a task of its own, as the request stream starts it."""
    await asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]


async def test_every_answer_gets_ids_and_is_counted() -> None:
    metrics = RequestMetrics()
    app = observe(Tracing(), metrics, False, True)(_hello)
    ctx = FakeContext(target=b"/a", headers=[(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
                                             (b"x-request-id", b"rid-1")])
    await _in_task(app(ctx))
    assert ctx.header(b"x-request-id") == b"rid-1"
    assert ctx.header(b"traceparent").startswith(f"00-{TRACE}-".encode())  # type: ignore[union-attr]
    assert re.fullmatch(rb"total;dur=\d+\.\d{3}", ctx.header(b"server-timing") or b"")
    assert metrics.requests == {("GET", 200, "HTTP/1.1"): 1}
    assert metrics.durations[("HTTP/1.1", "static")].counts[0] == 1  # kind: not PHP, not 4xx


async def test_a_second_pass_keeps_the_ids_and_only_the_answer_counts() -> None:
    """The stream answers 500 through the chain again, in the same task, after the app
    failed without answering: same request id, one request counted, as error."""
    metrics = RequestMetrics()
    seen: list[str] = []

    async def failing(ctx: RequestContext) -> None:
        record = current_record.get()
        assert record is not None
        seen.append(record.request_id)
        if ctx.error_status is None:
            raise RuntimeError("boom")
        await ctx.send_response(ctx.error_status, [])
        await ctx.end()

    app = observe(Tracing(), metrics, False, False)(failing)
    ctx = FakeContext()

    async def stream() -> None:
        with pytest.raises(RuntimeError):
            await app(ctx)
        ctx.error_status = 500  # what RequestStream._answer does
        await app(ctx)

    await _in_task(stream())
    assert len(seen) == 2 and seen[0] == seen[1]
    assert metrics.requests == {("GET", 500, "HTTP/1.1"): 1}
    assert [e["status"] for e in metrics.errors] == [500]


async def test_a_client_gone_before_any_answer_is_499() -> None:
    metrics = RequestMetrics()

    async def slow(ctx: RequestContext) -> None:
        await asyncio.sleep(10)

    app = observe(Tracing(), metrics, False, False)(slow)
    ctx = FakeContext()
    task = asyncio.get_running_loop().create_task(app(ctx))
    await asyncio.sleep(0.01)
    ctx.disconnected.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert metrics.requests == {("GET", 499, "HTTP/1.1"): 1}


def test_server_timing_names_php_only_once_php_ran() -> None:
    tracing = Tracing()
    record = tracing.start(FakeContext().request, ("192.0.2.1", 1), ("127.0.0.1", 80), False,
                           started=100.0)
    record.php_submitted, record.php_started, record.php_ended = 100.0, 100.002, 100.010
    assert re.fullmatch(rb"queue;dur=2\.000, php;dur=8\.000, total;dur=\d+\.\d{3}",
                        server_timing(record))


class _StoppedLater:
    """What WorkerMetrics reads of a PHP pool, which a test can stop."""

    def __init__(self) -> None:
        from gateway.php.pool import PoolStats

        self.started = True
        self.timeouts = self.sse_streams = self.fatals = 0
        self.wait_seconds, self.run_seconds = Histogram(), Histogram()
        self.php_errors: list[dict[str, object]] = []
        self.stats_now = PoolStats(2, 2, 1, 0, 41, 0, 3, 0, 0)

    def stats(self) -> object:
        assert self.started, "the bridge has no stats once stopped"
        return self.stats_now

    def threads(self) -> list[object]:
        return []

    def calls(self) -> list[object]:
        return []


def test_a_stopped_pool_keeps_its_last_counts(tmp_path: object) -> None:
    from pathlib import Path

    from gateway.observability.metrics import WorkerMetrics

    pool = _StoppedLater()
    worker = WorkerMetrics(Path(str(tmp_path)), 0, pool, RequestMetrics())  # type: ignore[arg-type]
    worker.flush()
    pool.started = False  # the drain is over: pool.stop(), then the last flush
    worker.stop()
    [snap] = [Snapshot.from_json(p.read_bytes()) for p in Path(str(tmp_path)).iterdir()]
    series = {name: items[0][1] for name, items in snap.series.items() if not items[0][0]}
    assert (series["php_requests"], series["php_rejected"]) == (41, 3)
