"""The pipeline stage that runs a PHP script: request in, response out, both streamed.

The request body is pumped into the bridge concurrently with the response (PHP may answer
before it has read everything); the response body leaves as PHP writes it, and each chunk
is acknowledged to the bridge only after the connection took it (send_data returned), so
a slow client holds the PHP thread back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from gateway.php.cgi import Script, build_request
from gateway.php.pool import Headers, Overloaded, PhpCall, PhpPool, PoolStopped
from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond

log = structlog.get_logger("gateway.php")

# Hop-by-hop or framing fields PHP may emit: the connection layer owns these.
_DROP = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"upgrade", b"status"})


@dataclass(frozen=True, slots=True)
class PhpStageOptions:
    request_timeout: float | None = 120.0  # REQUEST_TIMEOUT: 504 past it
    sse_timeout: float | None = 1800.0  # SSE_TIMEOUT: replaces it once a script streams events
    retry_after: int = 1  # seconds, on 503 when the pool is saturated


class PhpStage:
    def __init__(self, pool: PhpPool, options: PhpStageOptions) -> None:
        self.pool = pool
        self.options = options

    async def __call__(self, ctx: RequestContext, script: Script, document_root: str) -> None:
        """Runs the script for this request."""
        req = ctx.request
        php_req = build_request(
            method=req.method,
            target=req.target,
            http_version=req.http_version,
            headers=req.headers,
            script=script,
            document_root=document_root,
            client=ctx.client,
            server=ctx.server,
            tls=ctx.tls,
            content_length=req.content_length,
            request_time=time.time(),
            authority=req.authority,
            has_body=req.has_body,
        )
        if not php_req.body_complete:
            whole = ctx.take_complete_body()
            if whole is not None:
                php_req.body = whole
                php_req.body_complete = True
        try:
            call = self.pool.submit(php_req, self.options.request_timeout)
        except Overloaded:
            await self._refuse(ctx, 503, b"PHP workers are busy, retry shortly.\n")
            return
        except PoolStopped:
            await self._refuse(ctx, 503, b"The server is shutting down.\n")
            return

        pump: asyncio.Task[None] | None = None
        if not php_req.body_complete:
            pump = asyncio.create_task(self._pump_body(ctx, call))
        try:
            await self._relay(ctx, call)
        except TimeoutError:
            call.interrupt()
            log.warning("request timeout", uri=req.target.decode("latin-1"),
                        timeout=self.options.request_timeout)
            if call.status != 0:
                raise  # the response has started: only a reset or a close can tell
            await self._refuse(ctx, 504, b"The PHP script took too long.\n")
        except (ConnectionError, asyncio.CancelledError):
            call.cancel()
            raise
        finally:
            if pump is not None and not pump.done():
                pump.cancel()

    async def _relay(self, ctx: RequestContext, call: PhpCall) -> None:
        head = await call.response()
        if head is None:
            outcome = await call.wait_done()
            log.error("script ended without a response", outcome=str(outcome))
            await self._refuse(ctx, 500, b"")
            return
        status, headers = head
        status, headers = _clean_headers(status, headers)
        if _is_event_stream(headers):
            call.extend(self.options.sse_timeout)
        head_only = ctx.request.method == b"HEAD"
        body = None if head_only else call.complete_body()
        if body is not None:
            # PHP is done already (the usual case): one response with a content-length.
            if not any(name == b"content-length" for name, _ in headers):
                headers = [*headers, (b"content-length", str(len(body)).encode())]
            await ctx.send_response(status, headers)
            if body:
                await ctx.send_data(body)
            await ctx.end()
            return
        await ctx.send_response(status, headers)
        if not head_only:
            while data := await call.read():
                await ctx.send_data(data)
        await ctx.end()

    async def _pump_body(self, ctx: RequestContext, call: PhpCall) -> None:
        try:
            while (chunk := await ctx.receive()) is not None:
                if chunk:
                    await call.write_body(chunk)
                if call.outcome is not None:
                    return
        except ConnectionError:
            call.cancel()
            return
        call.end_body()

    async def _refuse(self, ctx: RequestContext, status: int, body: bytes) -> None:
        extra = [(b"retry-after", str(self.options.retry_after).encode())] if status == 503 else []
        await respond(ctx, status, body, extra)

def _is_event_stream(headers: Headers) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


def _clean_headers(status: int, headers: Headers) -> tuple[int, Headers]:
    """Applies a CGI `Status:` header (php-fpm honours it) and drops hop-by-hop fields."""
    if not any(name in _DROP for name, _ in headers):
        return status, headers
    kept: Headers = []
    for name, value in headers:
        if name == b"status":
            code = value.split(b" ", 1)[0]
            if code.isdigit() and 100 <= int(code) <= 999:
                status = int(code)
        elif name not in _DROP:
            kept.append((name, value))
    return status, kept
