"""The internal endpoints (INTERNAL_ADDR), served by the same HTTP stack as a tiny App:
/health (liveness), /ready (readiness: 503 from the start of a drain to the exit),
/metrics (Prometheus, the whole server), /status (what every PHP thread is doing) and
/config (the effective configuration, secrets redacted)."""

from __future__ import annotations

import json
import re
import time

from prometheus_client import CONTENT_TYPE_LATEST

from gateway.config import Config
from gateway.observability.metrics import WorkerMetrics, live_snapshots
from gateway.observability.status import status_document, status_html
from gateway.php.pool import PhpPool
from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond, respond_status

_SECRET_KEY = re.compile(r"pass|pw|secret|token|key|auth|credential", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")
_REDACTED = "<redacted>"


def redacted_config(config: Config) -> dict[str, str]:
    """OPTION -> effective value; php.ini values under secret-looking keys and the
    credentials of URLs are replaced."""
    out: dict[str, str] = {}
    for env, value in config.describe():
        if env == "PHP_INI_SET":
            value = ", ".join(f"{k}={_REDACTED if _SECRET_KEY.search(k) else v}"
                              for k, v in config.php_ini_set)
        out[env] = _URL_CREDENTIALS.sub(_REDACTED + "@", value)  # scheme://user:pw@host
    return out


class InternalApp:
    def __init__(self, pool: PhpPool, worker_index: int, config: Config,
                 metrics: WorkerMetrics | None) -> None:
        self.pool = pool
        self.worker_index = worker_index
        self.config = config
        self.metrics = metrics  # None without INTERNAL_ADDR (then nothing asks)
        self.ready = True
        self.started = time.time()

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.error_status is not None:  # an answer the server makes itself (bad request...)
            await respond_status(ctx, ctx.error_status)
            return
        path = ctx.request.target.partition(b"?")[0]
        json_type = [(b"content-type", b"application/json")]
        if path == b"/health":
            stats = self.pool.stats()
            ok = stats.threads_alive == stats.threads
            body = json.dumps({"status": "ok" if ok else "degraded", "worker": self.worker_index,
                               "php_threads_alive": stats.threads_alive,
                               "uptime_secs": round(time.time() - self.started, 1)}).encode()
            await self._send(ctx, 200 if ok else 503, body, json_type)
        elif path == b"/ready":
            body = json.dumps({"ready": self.ready}).encode()
            await self._send(ctx, 200 if self.ready else 503, body, json_type)
        elif path == b"/metrics":
            if self.metrics is None or self.metrics.requests is None:
                await respond(ctx, 404, b"Metrics are off (METRICS=off).\n")
                return
            body = self.metrics.scrape()
            await self._send(ctx, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
        elif path == b"/status" and self.metrics is not None:
            doc = status_document(live_snapshots(self.metrics.all_snapshots()),
                                  self.config.service_name)
            if _wants_json(ctx):
                await self._send(ctx, 200, json.dumps(doc).encode(), json_type)
            else:
                await self._send(ctx, 200, status_html(doc),
                                 [(b"content-type", b"text/html; charset=utf-8")])
        elif path == b"/config":
            body = json.dumps(redacted_config(self.config), indent=1).encode()
            await self._send(ctx, 200, body, json_type)
        else:
            await respond(ctx, 404, b"Not Found\n")

    async def _send(self, ctx: RequestContext, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]]) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        await ctx.send_response(status, headers)
        await ctx.send_data(body)  # dropped for HEAD by the request stream
        await ctx.end()


def _wants_json(ctx: RequestContext) -> bool:
    query = ctx.request.target.partition(b"?")[2]
    if query == b"json" or b"format=json" in query:
        return True
    accept = next((v for n, v in ctx.request.headers if n == b"accept"), b"")
    return b"application/json" in accept and b"text/html" not in accept
