"""The pipeline stage that runs a PHP script: request in, response out.

Request buffering (REQUEST_BUFFERING, on by default, as nginx's fastcgi_request_buffering):
the body is received before the request is queued for PHP, so a slow upload costs a
connection and a spool (memory, then a temp file), never a PHP thread; PHP then sees the
real CONTENT_LENGTH even for a chunked upload. Off, the body is pumped into the bridge as
it arrives, concurrently with the response (PHP may answer before it has read everything).

Response buffering (RESPONSE_BUFFERING, on by default, as fastcgi_buffering): PHP's output is
taken as fast as PHP writes it into a spool that the connection drains at the client's pace,
so the PHP thread is free when the script ends, whatever the client does. A client that
keeps up gets every flush() at once. Off, each chunk is acknowledged to the bridge only
after the connection took it, so a slow client holds the PHP thread back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import structlog

from gateway.observability.request_record import current_record
from gateway.observability.tracing import end_php_span, start_php_span
from gateway.php.cgi import Script, build_request
from gateway.php.pool import Overloaded, PhpCall, PhpPool, PoolStopped, Unavailable
from gateway.pipeline.context import RequestContext
from gateway.pipeline.php_length import DeclaredLength
from gateway.pipeline.responses import respond
from gateway.pipeline.sendfile import FILE_FIELDS, Sendfile
from gateway.pipeline.spool import MemoryBudget, Spool
from gateway.protocol.events import Headers

log = structlog.get_logger("gateway.php")

# Hop-by-hop or framing fields PHP may emit: the connection layer owns these.
# a complete body up to this size is sent as it is; a larger one goes through a spool, so
# that a client that does not take it holds budgeted memory or a file, not the whole body
SEND_AT_ONCE = 64 * 1024
_REFUSALS = {
    Overloaded: b"PHP workers are busy, retry shortly.\n",
    PoolStopped: b"The server is shutting down.\n",
    Unavailable: b"The application's worker script is failing to start.\n",
}
_DROP = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"upgrade", b"status"})


@dataclass(frozen=True, slots=True)
class PhpStageOptions:
    request_timeout: float | None = 120.0  # REQUEST_TIMEOUT: 504 past it
    sse_timeout: float | None = 1800.0  # SSE_TIMEOUT: replaces it once a script streams events
    retry_after: int = 1  # seconds, on 503 when the pool is saturated
    server_name: bytes | None = None  # SERVER_NAME; None: the request's Host when valid
    request_buffering: bool = True  # REQUEST_BUFFERING
    response_buffering: bool = True  # RESPONSE_BUFFERING


class PhpStage:
    def __init__(self, pool: PhpPool, options: PhpStageOptions,
                 budget: MemoryBudget | None = None, sendfile: Sendfile | None = None) -> None:
        self.pool = pool
        self.options = options
        self.budget = budget if budget is not None else MemoryBudget(64 << 20)
        # X-Sendfile / X-Accel-Redirect, handled where PHP's head is first seen: the stage
        # alone knows the call, so it can drop PHP's body and leave the thread free at once
        self.sendfile = sendfile
        self._discarding: set[asyncio.Task[None]] = set()

    def __call__(self, ctx: RequestContext, script: Script, document_root: str
                 ) -> Awaitable[None]:
        """Runs the script for this request."""
        req = ctx.request
        if not req.has_body:  # most requests: nothing to receive or to clean up
            return self._run(ctx, script, document_root, None, None, req.content_length)
        return self._with_body(ctx, script, document_root)

    async def _with_body(self, ctx: RequestContext, script: Script, document_root: str) -> None:
        req = ctx.request
        spool: Spool | None = None
        whole = ctx.take_complete_body()
        if whole is not None:
            content_length: int | None = len(whole)  # a chunked body, once whole, has one too
        elif self.options.request_buffering:
            spool = await self._receive_body(ctx)
            content_length = spool.size  # what nginx passes on after buffering
            if not spool.on_disk:
                whole = spool.take_all()
                spool.close()
                spool = None
        else:
            content_length = req.content_length
        try:
            await self._run(ctx, script, document_root, whole, spool, content_length)
        finally:
            if spool is not None:
                spool.close()

    async def _run(self, ctx: RequestContext, script: Script, document_root: str,
                   whole: bytes | None, spool: Spool | None, content_length: int | None) -> None:
        req = ctx.request
        record = current_record.get()
        ids = b""
        if record is not None:  # the observing middleware's: PHP gets its ids
            record.kind = "php"
            span_id, traceparent = start_php_span(record, script.filename)
            # name \0 value \0 pairs in one encode (the ids are visible ASCII)
            ids = (f"TRACE_ID\0{record.trace_id}\0SPAN_ID\0{span_id}\0REQUEST_ID\0"
                   f"{record.request_id}\0TRACEPARENT\0{traceparent}\0").encode()
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
            content_length=content_length,
            request_time=time.time(),
            authority=req.authority,
            has_body=req.has_body,
            server_name=self.options.server_name,
            extra_vars=ids,
        )
        if whole is not None and not php_req.body_complete:
            php_req.body = whole
            php_req.body_complete = True
        try:
            call = self.pool.submit(php_req, self.options.request_timeout)
        except (Overloaded, PoolStopped, Unavailable) as exc:
            if record is not None and record.php_span is not None:
                end_php_span(record, False, False)  # PHP never saw it
            await self._refuse(ctx, 503, _REFUSALS[type(exc)])
            return

        pump: asyncio.Task[None] | None = None
        if spool is not None:
            pump = asyncio.create_task(self._pump_spool(spool, call))
        elif not php_req.body_complete:
            pump = asyncio.create_task(self._pump_body(ctx, call))
        try:
            await self._relay(ctx, call)
        except TimeoutError:
            call.interrupt()
            self.pool.timeouts += 1
            log.warning("request timeout", uri=req.target.decode("latin-1"),
                        timeout=call.timeout)
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
        head = await call.response(ctx.send_interim)  # 103 Early Hints go out as they come
        if head is None:
            outcome = await call.wait_done()
            if outcome.unavailable:  # queued for a worker script that then failed to boot
                await self._refuse(ctx, 503, _REFUSALS[Unavailable])
                return
            log.error("script ended without a response", outcome=str(outcome))
            await self._refuse(ctx, 500, b"")
            return
        status, headers, to_file, event_stream, length = _read_head(*head)
        if to_file and self.sendfile is not None:
            self._discard_body(call)
            await self.sendfile.send(ctx, headers)
            return
        if event_stream:
            call.extend(self.options.sse_timeout)
            self.pool.sse_streams += 1
            try:
                await self._send_head_and_body(ctx, call, status, headers, length,
                                               every_chunk=True)
            finally:
                self.pool.sse_streams -= 1
            return
        await self._send_head_and_body(ctx, call, status, headers, length)

    async def _send_head_and_body(self, ctx: RequestContext, call: PhpCall, status: int,
                                  headers: Headers, length: DeclaredLength | None,
                                  every_chunk: bool = False) -> None:
        """`length`: PHP's own Content-Length. every_chunk: each chunk is flushed as it
        leaves (an event stream), not only what PHP flush()ed."""
        head_only = ctx.request.method == b"HEAD"
        body = None
        if head_only:
            length = None
        else:
            body = call.complete_body()
        if body is not None:
            # PHP is done already (the usual case): one response with a content-length.
            if length is not None:
                body = length.fit(body)
            else:
                headers = [*headers, (b"content-length", b"%d" % len(body))]
            await ctx.send_response(status, headers)
            if len(body) <= SEND_AT_ONCE or not self.options.response_buffering:
                if body:
                    await ctx.send_data(body)
            else:  # a client that stalls must not pin a large body in memory
                spool = Spool(self.budget)
                spool.put(body)
                del body
                await self._send_spooled(ctx, spool)
            await self._end(ctx, length)
            return
        await ctx.send_response(status, headers)
        if head_only:
            pass
        elif self.options.response_buffering:
            await self._relay_buffered(ctx, call, length, every_chunk)
        else:
            # each read_out() acknowledges the previous chunk: PHP goes on
            while (out := await call.read_out()) is not None:
                data, flush = out
                await ctx.send_data(length.fit(data) if length is not None else data,
                                    flush or every_chunk)
        await self._end(ctx, length)

    def _discard_body(self, call: PhpCall) -> None:
        """PHP's own body after an X-Sendfile head: taken as PHP writes it and dropped, so
        the script runs to its end without waiting on anyone."""
        if call.complete_body() is not None:
            return

        async def drain() -> None:
            with contextlib.suppress(Exception):  # a timeout interrupts the script itself
                while await call.read():
                    pass

        task = asyncio.create_task(drain())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    def _end(self, ctx: RequestContext, length: DeclaredLength | None) -> Awaitable[None]:
        """End the response, unless PHP wrote less than its own Content-Length: then it is
        left unended, which aborts it (as nginx closes), not passed off as whole."""
        if length is None or not (length.dropped or length.missing):
            return ctx.end()  # the usual case: no coroutine of ours
        return self._end_short(ctx, length)

    async def _end_short(self, ctx: RequestContext, length: DeclaredLength) -> None:
        if length.dropped:
            log.warning("PHP wrote more than its Content-Length: the rest was not sent",
                        uri=ctx.request.target.decode("latin-1"), content_length=length.declared,
                        dropped=length.dropped)
        if length.missing:
            log.error("PHP wrote less than its Content-Length: the response was cut",
                      uri=ctx.request.target.decode("latin-1"), content_length=length.declared,
                      missing=length.missing)
            return
        await ctx.end()

    async def _relay_buffered(self, ctx: RequestContext, call: PhpCall,
                              length: DeclaredLength | None = None,
                              every_chunk: bool = False) -> None:
        """PHP writes into a spool as fast as it likes; the client drains it at its pace.
        A flush() of PHP's travels with it: the chunk that takes the spool past the bytes
        PHP had written when it flushed goes out flushed."""
        spool = Spool(self.budget)
        wrote = asyncio.Event()  # PHP added output, or ended
        took = asyncio.Event()  # the client took some: a full spool has room again
        ended = False
        put = taken = 0  # bytes into and out of the spool
        flush_at: int | None = None  # bytes put when PHP last flushed, until that is sent

        async def take_from_php() -> None:
            nonlocal ended, put, flush_at
            try:
                while (out := await call.read_out()) is not None:
                    data, flush = out
                    if length is not None:
                        data = length.fit(data)  # past PHP's Content-Length: nothing sent
                    if data:
                        while spool.size and spool.size + len(data) > spool.limit:
                            took.clear()
                            await took.wait()
                        spool.put(data)
                        put += len(data)
                    if flush or every_chunk:
                        flush_at = put
                    wrote.set()
            finally:
                ended = True
                wrote.set()

        reader = asyncio.create_task(take_from_php())
        try:
            while True:
                data = spool.take()
                if data:
                    took.set()
                    taken += len(data)
                    flush = flush_at is not None and taken >= flush_at
                    if flush:
                        flush_at = None
                    await ctx.send_data(data, flush)
                    spool.sent()
                elif flush_at is not None:  # a flush() with nothing new since
                    flush_at = None
                    await ctx.send_data(b"", True)
                elif ended:
                    break
                else:
                    wrote.clear()
                    await wrote.wait()
            await reader  # raises what stopped PHP's output (a timeout)
        finally:
            if not reader.done():
                reader.cancel()
            spool.close()

    async def _send_spooled(self, ctx: RequestContext, spool: Spool) -> None:
        try:
            while data := spool.take():
                await ctx.send_data(data)
                spool.sent()
        finally:
            spool.close()

    async def _receive_body(self, ctx: RequestContext) -> Spool:
        """The whole request body, before PHP is asked to run (request buffering)."""
        spool = Spool(self.budget)
        try:
            while (chunk := await ctx.receive()) is not None:
                spool.put(chunk)
        except BaseException:
            spool.close()
            raise
        return spool

    async def _pump_spool(self, spool: Spool, call: PhpCall) -> None:
        """A buffered body that went to disk, fed to PHP at its pace."""
        while data := spool.take():
            await call.write_body(data)
            if call.outcome is not None:
                return
        call.end_body()

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

# the fields of PHP's head the stage acts on: any other passes with one set lookup
_NOTED = _DROP | FILE_FIELDS | {b"content-type", b"content-length"}


def _read_head(status: int, headers: Headers
               ) -> tuple[int, Headers, bool, bool, DeclaredLength | None]:
    """PHP's head in one pass (it runs for every PHP response): the status and headers as
    they go out (_clean_headers), whether they name a file (X-Sendfile, X-Accel-Redirect),
    whether the first Content-Type is an event stream, and the first Content-Length (a valid
    one: DeclaredLength.parse)."""
    to_file = event_stream = hop_by_hop = False
    typed = False
    length: DeclaredLength | None = None
    sized = False
    for name, value in headers:
        if name not in _NOTED:
            continue
        if name == b"content-type":
            if not typed:
                typed = True
                event_stream = value.startswith(b"text/event-stream")
        elif name == b"content-length":
            if not sized:
                sized = True
                length = DeclaredLength.parse(value)
        elif name in FILE_FIELDS:
            to_file = True
        else:
            hop_by_hop = True
    if hop_by_hop:
        status, headers = _clean_headers(status, headers)
    return status, headers, to_file, event_stream, length


def _clean_headers(status: int, headers: Headers) -> tuple[int, Headers]:
    """Applies a CGI `Status:` header (php-fpm honours it) and drops hop-by-hop fields."""
    for name, _ in headers:  # a loop, not any(): this runs for every PHP response
        if name in _DROP:
            break
    else:
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
