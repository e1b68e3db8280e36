"""The outermost stage that sees the answer: request ids and trace context, metrics, the
access log and Server-Timing, in one ContextProxy so that a request pays for one wrapper.

It runs for every answer, including the ones the server makes itself (ctx.error_status
set). When the stream answers a second time after a failure (the fallback 500, a body
timeout's 408 after the app was stopped) the chain runs again in the same task: the record
made by the first pass is found in `current_record`, so both passes share the request's
ids and only the answer that went out is counted and logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from gateway.observability.metrics import RequestMetrics
from gateway.observability.request_record import RequestRecord, current_record
from gateway.observability.tracing import Tracing
from gateway.pipeline.access_log import CLIENT_CLOSED, write_access_line
from gateway.pipeline.context import App, ContextProxy, Middleware, RequestContext
from gateway.protocol.events import Headers


class _Observed(ContextProxy):
    """Sees the status and adds the ids to the head; the body bytes that arrived and left
    are the request stream's counts (bytes_received, bytes_sent), read when it is over."""

    __slots__ = ("record", "status", "timing")

    def __init__(self, inner: RequestContext, record: RequestRecord, timing: bool) -> None:
        ContextProxy.__init__(self, inner)
        self.record = record
        self.timing = timing
        self.status = 0

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        self.status = status
        record = self.record
        headers = [*headers, (b"traceparent", record.traceparent.encode()),
                   (b"x-request-id", record.request_id.encode())]
        if self.timing:
            headers.append((b"server-timing", server_timing(record)))
        return self.inner.send_response(status, headers)


def server_timing(record: RequestRecord) -> bytes:
    """Server-Timing (W3C): the wait for a PHP thread, PHP's run so far and the total, in
    ms, as they stand when the response head leaves."""
    now = time.monotonic()
    parts = []
    wait = record.php_wait
    if wait is not None:
        parts.append(f"queue;dur={wait * 1000:.3f}")
        run = record.php_run
        parts.append(f"php;dur={(now - record.php_started if run is None else run) * 1000:.3f}")
    parts.append(f"total;dur={(now - record.started) * 1000:.3f}")
    return ", ".join(parts).encode()


def observe(tracing: Tracing, metrics: RequestMetrics | None, access_log: bool,
            timing: bool, kind: str = "") -> Middleware:
    """`kind` fixes the kind of every request (the internal server's "internal")."""

    def wrap(app: App) -> App:
        def finish(proxy: _Observed, status: int) -> None:
            record = proxy.record
            ended = time.monotonic()
            seconds = ended - record.started
            request = proxy.request
            kind = record.kind or ("error" if status >= 400 else "static")
            bytes_sent = proxy.bytes_sent
            if metrics is not None:
                if kind == "internal":  # probes and scrapes: timed, not counted as traffic
                    metrics.observe(request.http_version, kind, seconds)
                else:
                    metrics.request(request.method, status, request.http_version, kind,
                                    seconds, proxy.bytes_received, bytes_sent)
                    if status >= 500:
                        metrics.server_error(request.method, record.uri, status,
                                             record.request_id)
            if access_log:
                write_access_line(proxy, record, status, bytes_sent, seconds)
            if record.span is not None:
                tracing.end(record, status, bytes_sent, ended)

        async def observed(ctx: RequestContext) -> None:
            record = current_record.get()
            if record is None or record.owner is not ctx:  # else: a second pass, same stream
                record = tracing.start(ctx.request, ctx.client, ctx.server, ctx.tls,
                                       time.monotonic())
                record.kind = kind
                record.owner = ctx
                current_record.set(record)
            proxy = _Observed(ctx, record, timing)
            try:
                await app(proxy)
            except asyncio.CancelledError:
                # cancelled with nothing sent and the client still there: the stream answers
                # (408, 500) through the chain again, and that answer is the one recorded
                if proxy.status or ctx.disconnected.is_set():
                    finish(proxy, proxy.status or CLIENT_CLOSED)
                raise
            except Exception:
                if proxy.status:  # the fallback can only reset or close: record what went out
                    finish(proxy, proxy.status)
                raise  # else the request stream answers 500 through the chain, recorded then
            finish(proxy, proxy.status or CLIENT_CLOSED)

        return observed

    return wrap
