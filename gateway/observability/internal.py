"""The internal endpoints (INTERNAL_ADDR), served by the same HTTP stack as a tiny App:
/health (liveness), /ready (readiness: false while draining), /metrics (Prometheus)."""

from __future__ import annotations

import json
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.php.pool import PhpPool
from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond, respond_status


class PoolCollector(Collector):
    """PHP pool gauges read at scrape time: no bookkeeping on the request path."""

    def __init__(self, pool: PhpPool) -> None:
        self.pool = pool

    def collect(self):  # type: ignore[no-untyped-def]
        s = self.pool.stats()
        yield GaugeMetricFamily("php_gateway_php_threads", "PHP threads configured", s.threads)
        yield GaugeMetricFamily("php_gateway_php_threads_alive", "PHP threads serving",
                                s.threads_alive)
        yield GaugeMetricFamily("php_gateway_php_threads_busy", "PHP threads running a request",
                                s.busy)
        yield GaugeMetricFamily("php_gateway_php_queue_depth", "Requests waiting for a thread",
                                s.queued)
        yield CounterMetricFamily("php_gateway_php_requests", "PHP requests completed",
                                  s.requests)
        yield CounterMetricFamily("php_gateway_php_fatal_errors", "PHP requests ended by a fatal",
                                  s.fatals)
        yield CounterMetricFamily("php_gateway_php_rejected", "Requests refused as overloaded",
                                  s.rejected)


class InternalApp:
    def __init__(self, pool: PhpPool, worker_index: int) -> None:
        self.pool = pool
        self.worker_index = worker_index
        self.ready = True
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.registry.register(PoolCollector(pool))

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
            body = generate_latest(self.registry)
            await self._send(ctx, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
        else:
            await respond(ctx, 404, b"Not Found\n")

    async def _send(self, ctx: RequestContext, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]]) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        await ctx.send_response(status, headers)
        await ctx.send_data(body)  # dropped for HEAD by the request stream
        await ctx.end()
