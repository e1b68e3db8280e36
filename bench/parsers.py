"""Parsers for what the load generators print: wrk's report, h2load's report and log file.

Pure functions over text so tests can feed them output captured from real runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# wrk and h2load both print sizes in binary units (1KB = 1024 bytes).
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


class ParseError(ValueError):
    """The text is not the report the parser expects (the tool failed or changed format)."""


@dataclass(frozen=True)
class LoadResult:
    """One load-generator run, in the units the benchmark reports."""

    requests: int  # responses counted by the tool, errors included
    duration_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int  # socket errors + timeouts + non-2xx/3xx responses
    bytes_read: int


def parse_duration(text: str) -> float:
    """'1.90ms' -> 0.0019 (seconds); wrk and h2load print us/ms/s, wrk also m and h."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if not m:
        raise ParseError(f"not a duration: {text!r}")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_size(text: str) -> int:
    """'250.05KB' -> 256051 (bytes, rounded)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(B|KB|MB|GB|TB)\s*", text)
    if not m:
        raise ParseError(f"not a size: {text!r}")
    return round(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_wrk(text: str) -> LoadResult:
    """Parses `wrk --latency` output (wrk 4.x)."""
    total = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", text, re.M)
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not total or not rps:
        raise ParseError("no 'N requests in' / 'Requests/sec:' lines in wrk output")
    percentiles: dict[str, float] = {}
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, value in re.findall(r"^\s*(\d+)%\s+([0-9.]+\w+)\s*$", dist[1], re.M):
            percentiles[pct] = parse_duration(value) * 1e3
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    return LoadResult(
        requests=int(total.group(1)),
        duration_s=parse_duration(total.group(2)),
        rps=float(rps.group(1)),
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
        errors=errors,
        bytes_read=parse_size(total.group(3)),
    )


@dataclass(frozen=True)
class H2loadSummary:
    """The totals h2load prints at the end of a run."""

    duration_s: float
    rps: float
    total: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    bytes_total: int
    protocol: str | None  # "h2", "http/1.1", ...: what ALPN actually picked
    tls: str | None  # "TLSv1.3 TLS_AES_256_GCM_SHA384"; None over cleartext

    @property
    def errors(self) -> int:
        # h2load's `failed` already counts `errored` streams and 4xx/5xx responses
        # (on_stream_close: status_success is 0 for them), so adding those would count twice.
        return self.failed


def parse_h2load(text: str) -> H2loadSummary:
    """Parses h2load's end-of-run report (nghttp2 1.4x-1.6x)."""
    fin = re.search(r"^finished in ([0-9.]+\w+), ([0-9.]+) req/s", text, re.M)
    req = re.search(
        r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
        re.M,
    )
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    traffic = re.search(r"^traffic: [0-9.]+\w+ \((\d+)\) total", text, re.M)
    if not (fin and req and codes and traffic):
        raise ParseError("h2load output lacks the finished/requests/status codes/traffic lines")
    proto = re.search(r"^Application protocol: (\S+)", text, re.M)
    tls = re.search(r"^TLS Protocol: (\S+)\s*\nCipher: (\S+)", text, re.M)
    return H2loadSummary(
        duration_s=parse_duration(fin.group(1)),
        rps=float(fin.group(2)),
        total=int(req.group(1)),
        succeeded=int(req.group(2)),
        failed=int(req.group(3)),
        errored=int(req.group(4)),
        timeout=int(req.group(5)),
        status_2xx=int(codes.group(1)),
        status_3xx=int(codes.group(2)),
        status_4xx=int(codes.group(3)),
        status_5xx=int(codes.group(4)),
        bytes_total=int(traffic.group(1)),
        protocol=proto.group(1) if proto else None,
        tls=f"{tls.group(1)} {tls.group(2)}" if tls else None,
    )


def h2load_latencies_us(log_lines: Iterable[str]) -> list[int]:
    """Per-request latencies (µs) from an h2load --log-file: start_us, status, latency_us."""
    out: list[int] = []
    for line in log_lines:
        cols = line.split("\t")
        if len(cols) >= 3 and cols[2].strip().isdigit():
            out.append(int(cols[2]))
    return out


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile, as wrk reports it (no interpolation)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def h2load_result(report: str, log_lines: Iterable[str]) -> LoadResult:
    """h2load's report plus its per-request log, folded into the common result."""
    s = parse_h2load(report)
    lat = sorted(h2load_latencies_us(log_lines))
    return LoadResult(
        requests=s.total,
        duration_s=s.duration_s,
        rps=s.rps,
        p50_ms=percentile(lat, 50) / 1e3 if lat else None,
        p99_ms=percentile(lat, 99) / 1e3 if lat else None,
        errors=s.errors,
        bytes_read=s.bytes_total,
    )
