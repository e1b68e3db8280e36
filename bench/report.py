"""Folds the measured cells into the table, the results files and the ratio chart."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.parsers import LoadResult

MIB = 1024 * 1024


@dataclass
class Cell:
    """One measured run of one load against one server."""

    server: str
    workload: str
    protocol: str  # "h1" (wrk) or "h2" (h2load over TLS)
    round: int
    command: str
    result: LoadResult | None = None
    peak_rss: int = 0
    peak_pss: int = 0
    pss_by_role: dict[str, list[int]] = field(default_factory=dict)  # at peak_pss, per process
    error: str | None = None  # the tool failed: no numbers for this cell
    tls: str | None = None  # what h2load negotiated, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    server_cpu_s: float = 0.0  # CPU seconds used by the server's process tree
    load_cpu_s: float = 0.0  # ... by the load generator
    other_cpu_s: float = 0.0  # ... by everything else on the machine: noise
    note: str | None = None  # what an erroring server answered right after the run


@dataclass
class Row:
    """The rounds of one (server, workload, protocol), reduced."""

    server: str
    workload: str
    protocol: str
    rps: float | None
    rps_rounds: list[float]
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    requests: int
    peak_rss: int
    peak_pss: int
    pss_by_role: dict[str, list[int]]  # the peak cell's PSS of each process, by what it is
    bytes_per_response: float | None
    cpu_us_per_request: float | None  # server CPU time per answered request
    other_cpu_share: float  # mean share of the machine's CPUs other processes took
    failures: list[str] = field(default_factory=list)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def reduce(cells: list[Cell], cores: int) -> list[Row]:
    """Median throughput and latency percentiles over rounds, summed errors, peak memory."""
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.server, c.workload, c.protocol), []).append(c)
    rows = []
    for (server, workload, protocol), cs in groups.items():
        ok = [c.result for c in cs if c.result is not None]
        rps = [r.rps for r in ok]
        requests = sum(r.requests for r in ok)
        rows.append(Row(
            server=server, workload=workload, protocol=protocol,
            rps=statistics.median(rps) if rps else None,
            rps_rounds=rps,
            p50_ms=_median([r.p50_ms for r in ok if r.p50_ms is not None]),
            p99_ms=_median([r.p99_ms for r in ok if r.p99_ms is not None]),
            errors=sum(r.errors for r in ok),
            requests=requests,
            peak_rss=max((c.peak_rss for c in cs), default=0),
            peak_pss=max((c.peak_pss for c in cs), default=0),
            pss_by_role=max(cs, key=lambda c: c.peak_pss).pss_by_role,
            bytes_per_response=sum(r.bytes_read for r in ok) / requests if requests else None,
            cpu_us_per_request=(sum(c.server_cpu_s for c in cs if c.result) * 1e6 / requests
                                if requests else None),
            other_cpu_share=statistics.fmean(
                [c.other_cpu_s / (c.result.duration_s * cores) for c in cs
                 if c.result and c.result.duration_s]) if ok else 0.0,
            failures=[c.error for c in cs if c.error],
        ))
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(rows: list[Row], subject: str, baseline: str) -> list[dict[str, Any]]:
    """subject / baseline for each (workload, protocol) both have numbers for."""
    by = {(r.server, r.workload, r.protocol): r for r in rows}
    out = []
    for r in rows:
        if r.server != subject:
            continue
        b = by.get((baseline, r.workload, r.protocol))
        if b is None:
            continue
        out.append({
            "workload": r.workload, "protocol": r.protocol,
            "rps": _ratio(r.rps, b.rps),
            "p50": _ratio(r.p50_ms, b.p50_ms),
            "p99": _ratio(r.p99_ms, b.p99_ms),
            "rss": _ratio(float(r.peak_rss), float(b.peak_rss)),
        })
    return out


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


PROTOCOL_LABEL = {"h1": "HTTP/1.1 (wrk)", "h2": "HTTP/2+TLS (h2load)"}


def markdown_table(rows: list[Row], labels: dict[str, str], workload_labels: dict[str, str],
                   subject: str, baseline: str) -> str:
    by_ratio = {(x["workload"], x["protocol"]): x for x in ratios(rows, subject, baseline)}
    lines = [
        f"| workload | protocol | server | req/s | p50 ms | p99 ms | errors | peak RSS MiB "
        f"| server CPU µs/req | bytes/resp | req/s ÷ {labels.get(baseline, baseline)} |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = {k: i for i, k in enumerate(workload_labels)}
    srv_order = {k: i for i, k in enumerate(labels)}
    for r in sorted(rows, key=lambda r: (order.get(r.workload, 99), r.protocol,
                                          srv_order.get(r.server, 99))):
        ratio = by_ratio.get((r.workload, r.protocol)) if r.server == subject else None
        err = str(r.errors) + (f" ({len(r.failures)} runs failed)" if r.failures else "")
        lines.append(
            f"| {workload_labels.get(r.workload, r.workload)} | {PROTOCOL_LABEL[r.protocol]} "
            f"| {labels.get(r.server, r.server)} | {_f(r.rps, ',.0f')} | {_f(r.p50_ms, '.2f')} "
            f"| {_f(r.p99_ms, '.2f')} | {err} | {r.peak_rss / MIB:.0f} "
            f"| {_f(r.cpu_us_per_request, '.0f')} | {_f(r.bytes_per_response, ',.0f')} "
            f"| {'**' + _f(ratio['rps'], '.2f') + 'x**' if ratio else ''} |"
        )
    return "\n".join(lines)


def plain_table(rows: list[Row], labels: dict[str, str], workload_labels: dict[str, str]) -> str:
    """Fixed-width table for the terminal."""
    head = f"{'workload':24} {'proto':5} {'server':26} {'req/s':>10} {'p50ms':>8} {'p99ms':>8} " \
           f"{'errors':>7} {'RSS MiB':>8} {'bytes/resp':>10}"
    out = [head, "-" * len(head)]
    order = {k: i for i, k in enumerate(workload_labels)}
    srv_order = {k: i for i, k in enumerate(labels)}
    for r in sorted(rows, key=lambda r: (order.get(r.workload, 99), r.protocol,
                                          srv_order.get(r.server, 99))):
        out.append(
            f"{workload_labels.get(r.workload, r.workload)[:24]:24} {r.protocol:5} "
            f"{labels.get(r.server, r.server)[:26]:26} {_f(r.rps, ',.0f'):>10} "
            f"{_f(r.p50_ms, '.2f'):>8} {_f(r.p99_ms, '.2f'):>8} {r.errors:>7} "
            f"{r.peak_rss / MIB:>8.0f} {_f(r.bytes_per_response, ',.0f'):>10}"
        )
    return "\n".join(out)


def write_json(path: Path, meta: dict[str, Any], cells: list[Cell], rows: list[Row],
               ratio_rows: list[dict[str, Any]], soak: dict[str, Any] | None) -> None:
    path.write_text(json.dumps({
        **meta,
        "rows": [asdict(r) for r in rows],
        "ratios": ratio_rows,
        "cells": [asdict(c) for c in cells],
        "soak": soak,
    }, indent=2, ensure_ascii=False) + "\n")


def chart(path: Path, ratio_rows: list[dict[str, Any]], workload_labels: dict[str, str],
          title: str) -> None:
    """Bars of php-gateway ÷ baseline: throughput (higher is better), p99 and RSS (lower)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a benchmark box
    import matplotlib.pyplot as plt

    order = {k: i for i, k in enumerate(workload_labels)}
    rs = sorted(ratio_rows, key=lambda x: (order.get(x["workload"], 99), x["protocol"]))
    short = {"hello": "hello", "superglobals": "superglobals", "static": "static 100K",
             "big": "PHP 1 MB", "post": "POST 10K"}
    names = [f"{short.get(x['workload'], x['workload'])}\n"
             f"{'HTTP/1.1' if x['protocol'] == 'h1' else 'h2+TLS'}" for x in rs]
    panels = [("rps", "req/s ratio (higher is better)"), ("p99", "p99 latency ratio (lower is "
              "better)"), ("rss", "peak RSS ratio (lower is better)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, len(rs) * 1.1), 10), sharex=True)
    for ax, (metric, ylabel) in zip(axes, panels, strict=True):
        vals = [x[metric] if x[metric] is not None else 0.0 for x in rs]
        better = [(v >= 1) if metric == "rps" else (v <= 1) for v in vals]
        bars = ax.bar(range(len(rs)), vals,
                      color=["#2e7d32" if b else "#c62828" for b in better])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(ylabel, fontsize=9)
        for bar, v in zip(bars, vals, strict=True):
            ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)
    axes[-1].set_xticks(range(len(rs)), names, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
