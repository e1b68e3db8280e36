"""The access log as a middleware: one JSON line per answered request, with the status and
the body bytes that actually left (nginx's $status and $body_bytes_sent), for every answer,
including the ones the server makes itself (parser errors, the fallback 500)."""

from __future__ import annotations

import asyncio
import time

import structlog

from gateway.pipeline.context import App, ContextProxy, RequestContext
from gateway.protocol.events import Headers

log = structlog.get_logger("gateway.access")

# nginx's code for a request the client abandoned before any answer
CLIENT_CLOSED = 499


class _Recorder(ContextProxy):
    __slots__ = ("bytes_sent", "status")

    def __init__(self, inner: RequestContext) -> None:
        ContextProxy.__init__(self, inner)
        self.status = 0
        self.bytes_sent = 0

    async def send_response(self, status: int, headers: Headers) -> None:
        self.status = status
        await self.inner.send_response(status, headers)

    async def send_data(self, data: bytes) -> None:
        await self.inner.send_data(data)
        self.bytes_sent += len(data)


def access_log(app: App) -> App:
    async def logged(ctx: RequestContext) -> None:
        started = time.perf_counter()
        recorder = _Recorder(ctx)
        try:
            await app(recorder)
        except asyncio.CancelledError:
            _write(recorder, started, recorder.status or CLIENT_CLOSED)
            raise
        except Exception:
            if recorder.status:  # the fallback can only reset or close: log what went out
                _write(recorder, started, recorder.status)
            raise  # else the request stream answers 500 through the chain, logged then
        _write(recorder, started, recorder.status or CLIENT_CLOSED)

    return logged


def _write(ctx: _Recorder, started: float, status: int) -> None:
    req = ctx.request
    log.info(
        "request",
        method=req.method.decode("latin-1"),
        uri=req.target.decode("latin-1"),
        protocol=f"HTTP/{req.http_version}",
        status=status,
        bytes_sent=ctx.bytes_sent,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        client=ctx.client[0],
    )
