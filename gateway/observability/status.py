"""/status on INTERNAL_ADDR: what every worker process is doing now, for a person (an HTML page
that reloads itself every 2 s) or a tool (JSON with ?json or Accept: application/json).

Per process: each PHP thread, idle or busy with the method, URI and elapsed time of its
request; the queue depth; the slowest PHP requests in flight; the last server errors (5xx
answers and PHP's error messages). The answering process shows itself live and the others
as of their last snapshot (gateway/observability/metrics.py: at most a second old).
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.observability.metrics import RequestMetrics, Snapshot
    from gateway.php.pool import PhpPool

SLOWEST_SHOWN = 10
REFRESH_SECONDS = 2


def process_status(pool: PhpPool, requests: RequestMetrics | None,
                   started: float) -> dict[str, Any]:
    now = time.monotonic()
    threads: list[dict[str, Any]] = []
    taken = pool.threads()
    running = {id(call) for call, _ in taken if call is not None}
    for i, (call, since) in enumerate(taken):
        if call is None:
            threads.append({"thread": i, "state": "idle"})
            continue
        record = call.record
        threads.append({"thread": i, "state": "busy",
                        "method": record.method if record else "",
                        "uri": record.uri if record else "",
                        "request_id": record.request_id if record else "",
                        "elapsed_ms": round((now - since) * 1000, 1)})
    in_flight = []
    for call in pool.calls():
        record = call.record
        if record is None:
            continue
        in_flight.append({"method": record.method, "uri": record.uri,
                          "request_id": record.request_id,
                          "state": "running" if id(call) in running else "queued",
                          "elapsed_ms": round((now - record.started) * 1000, 1)})
    in_flight.sort(key=lambda r: -float(r["elapsed_ms"]))
    errors = sorted([*pool.php_errors, *(requests.errors if requests else ())],
                    key=lambda e: e["time"])
    stats = pool.stats() if pool.started else None
    return {
        "uptime_secs": round(time.time() - started, 1),
        "threads": threads,
        "queue_depth": stats.queued if stats else 0,
        "php_requests": stats.requests if stats else 0,
        "slowest": in_flight[:SLOWEST_SHOWN],
        "recent_errors": errors[-20:],
    }


def status_document(snapshots: list[Snapshot], service: str) -> dict[str, Any]:
    now = time.time()
    return {"service": service, "time": now, "processes": [
        {"worker": s.worker, "pid": s.pid, "age_secs": round(max(0.0, now - s.time), 2),
         **s.status} for s in snapshots]}


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:18px 0 6px}
.meta{color:#666;margin-bottom:12px}
.proc{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:10px 0}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;font-size:13px}
th{color:#555;font-weight:600}
.idle{background:#2e7d32;color:#fff} .busy{background:#e65100;color:#fff}
.state{border-radius:4px;padding:1px 8px;font-weight:600}
.uri{font-family:ui-monospace,monospace;word-break:break-all}
.none{color:#888;font-style:italic}
"""


def _rows(items: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    if not items:
        return '<p class="none">none</p>'
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = []
    for item in items:
        cells = []
        for key, _ in columns:
            value = item.get(key, "")
            if key == "state":
                cells.append(f'<td><span class="state {html.escape(str(value))}">'
                             f"{html.escape(str(value))}</span></td>")
            elif key == "time":
                cells.append(f"<td>{time.strftime('%H:%M:%S', time.localtime(value))}</td>")
            else:
                css = ' class="uri"' if key in ("uri", "message") else ""
                cells.append(f"<td{css}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def status_html(doc: dict[str, Any]) -> bytes:
    parts = [f"<!doctype html><html><head><meta charset=utf-8>"
             f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
             f"<title>{html.escape(doc['service'])} status</title><style>{_CSS}</style>"
             f"</head><body><h1>{html.escape(doc['service'])}</h1>"
             f'<div class="meta">{len(doc["processes"])} worker process(es); '
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc['time']))}; "
             f"refreshes every {REFRESH_SECONDS} s; JSON: /status?json</div>"]
    for p in doc["processes"]:
        busy = sum(1 for t in p.get("threads", []) if t["state"] == "busy")
        parts.append(
            f'<div class="proc" id="worker-{p["worker"]}"><h2>worker {p["worker"]} '
            f'(pid {p["pid"]})</h2><div class="meta">PHP threads busy {busy} of '
            f'{len(p.get("threads", []))}; queue depth {p.get("queue_depth", 0)}; '
            f'PHP requests {p.get("php_requests", 0)}; up {p.get("uptime_secs", 0)} s; '
            f'as of {p["age_secs"]} s ago</div>'
            + _rows(p.get("threads", []), [("thread", "thread"), ("state", "state"),
                                           ("method", "method"), ("uri", "URI"),
                                           ("elapsed_ms", "elapsed ms")])
            + "<h2>slowest requests in flight</h2>"
            + _rows(p.get("slowest", []), [("state", "state"), ("method", "method"),
                                           ("uri", "URI"), ("elapsed_ms", "elapsed ms"),
                                           ("request_id", "request id")])
            + "<h2>recent errors</h2>"
            + _rows(list(reversed(p.get("recent_errors", []))),
                    [("time", "time"), ("status", "status"), ("method", "method"),
                     ("uri", "URI"), ("message", "message"), ("request_id", "request id")])
            + "</div>")
    parts.append("</body></html>")
    return "".join(parts).encode()
