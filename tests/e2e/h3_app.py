"""The App the HTTP/3 end-to-end tests serve: it speaks the pipeline contract directly
(gateway/pipeline/context.py), so the QUIC layer is tested without PHP.

Routes:
  GET  /hello            b"hello over h3\\n"
  GET  /big/<n>          n deterministic bytes (pattern_chunk), with content-length
  GET  /slow/<n>         n chunks of 1000 bytes, 50 ms apart, no content-length
  GET  /produce/<tag>/<n>  like /big, counting in app.produced[tag] what send_data accepted
  POST /echo             the request body, streamed back as it arrives
  POST /upload           {"length": n, "sha256": hex} of the request body
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond_status

CHUNK = 64 * 1024


def pattern_chunk(index: int) -> bytes:
    """64 KiB that differ for every index, so a lost, repeated or swapped chunk is caught."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (CHUNK // 32)


def pattern(size: int) -> bytes:
    return b"".join(pattern_chunk(i) for i in range((size + CHUNK - 1) // CHUNK))[:size]


def pattern_sha256(size: int) -> str:
    return hashlib.sha256(pattern(size)).hexdigest()


@dataclass
class Progress:
    produced: int = 0  # bytes send_data() has returned for
    blocked: bool = False  # inside a send_data() call right now
    done: bool = False


@dataclass
class H3TestApp:
    produced: dict[str, Progress] = field(default_factory=dict)
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.error_status is not None:  # an answer the server makes itself
            await respond_status(ctx, ctx.error_status)
            return
        req = ctx.request
        self.requests.append((req.method, req.target))
        parts = req.target.split(b"?", 1)[0].strip(b"/").split(b"/")
        route = parts[0]
        if route == b"hello":
            await self._send(ctx, 200, b"hello over h3\n", [(b"content-type", b"text/plain")])
        elif route == b"big":
            await self._stream_pattern(ctx, int(parts[1]), None)
        elif route == b"produce":
            progress = self.produced.setdefault(parts[1].decode(), Progress())
            await self._stream_pattern(ctx, int(parts[2]), progress)
        elif route == b"slow":
            await ctx.send_response(200, [(b"content-type", b"application/octet-stream")])
            for i in range(int(parts[1])):
                await asyncio.sleep(0.05)
                await ctx.send_data(bytes([65 + i % 26]) * 1000)
            await ctx.end()
        elif route == b"echo":
            await ctx.send_response(200, [(b"content-type", b"application/octet-stream")])
            while (chunk := await ctx.receive()) is not None:
                await ctx.send_data(chunk)
            await ctx.end()
        elif route == b"upload":
            digest = hashlib.sha256()
            length = 0
            while (chunk := await ctx.receive()) is not None:
                digest.update(chunk)
                length += len(chunk)
            body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
            await self._send(ctx, 200, body, [(b"content-type", b"application/json")])
        else:
            await self._send(ctx, 404, b"not found\n", [])

    @staticmethod
    async def _send(ctx: RequestContext, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]]) -> None:
        await ctx.send_response(status, [*headers, (b"content-length", b"%d" % len(body))])
        await ctx.send_data(body)
        await ctx.end()

    @staticmethod
    async def _stream_pattern(ctx: RequestContext, size: int, progress: Progress | None) -> None:
        await ctx.send_response(200, [(b"content-type", b"application/octet-stream"),
                                      (b"content-length", b"%d" % size)])
        sent = 0
        index = 0
        while sent < size:
            chunk = pattern_chunk(index)[: size - sent]
            if progress is not None:
                progress.blocked = True
            await ctx.send_data(chunk)
            sent += len(chunk)
            index += 1
            if progress is not None:
                progress.blocked = False
                progress.produced = sent
        await ctx.end()
        if progress is not None:
            progress.done = True
