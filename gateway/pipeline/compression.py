"""Response compression (COMPRESSION): zstd, br or gzip, as the client accepts, streamed.

The last middleware before the endpoint. It decides on the response head (the checks are
gateway/pipeline/encoding.py's, shared with the static files' cached forms):

* not compressible (type, status, size, Content-Encoding, no-transform, Range), or HEAD:
  passed on as it is, with `Vary: Accept-Encoding` when another client could get it
  compressed;
* a Content-Length and the whole body in the first chunk (PHP's complete-body answer, a
  static file from memory): compressed in one go and sent with the new Content-Length;
* anything else (PHP's streamed output, SSE, a file streamed from disk): compressed as it
  comes, framed chunked / by DATA frames. The encoder is flushed when the sender asks
  (send_data's flush: PHP's flush(), every SSE event), not after each chunk: the 4 KiB
  spills of PHP's output_buffering compress as one stream, as nginx's gzip filter does.

A body at least OFFLOAD_BYTES long is compressed in the default thread executor, so a 1 MB
page does not hold up the other connections of this event loop. A streamed 4xx/5xx head is
held until its first byte: an error answer that stays empty reaches the error-page stage
(outside this one) as empty, without an encoder's empty frame.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from gateway.config import Config
from gateway.pipeline.compressors import StreamEncoder, compress_whole, stream_encoder
from gateway.pipeline.context import App, ContextProxy, Middleware, RequestContext
from gateway.pipeline.encoding import (
    CompressionPolicy,
    ResponseFields,
    encoded_headers,
    with_vary,
)
from gateway.protocol.events import Headers

OFFLOAD_BYTES = 32 * 1024  # above this a chunk is compressed off the event loop

_PASS, _WHOLE, _STREAM = range(3)


class _Compressing(ContextProxy):
    """Encodes the body of one response with `coding`, if its head allows."""

    __slots__ = ("coding", "encoder", "held", "mode", "policy", "unflushed", "want_length")

    def __init__(self, inner: RequestContext, policy: CompressionPolicy) -> None:
        ContextProxy.__init__(self, inner)
        self.policy = policy
        self.coding: str | None = None
        self.mode = _PASS
        self.held: tuple[int, Headers] | None = None  # a head waiting for its first chunk
        self.want_length: int | None = None  # _WHOLE: the identity Content-Length
        self.encoder: StreamEncoder | None = None
        self.unflushed = False  # the encoder holds input it has not flushed out

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        fields = ResponseFields.read(headers)
        if not self.policy.could_compress(status, fields):
            return self.inner.send_response(status, headers)
        coding = None
        if self.request.method != b"HEAD":
            coding = self.policy.choose(self.request.headers)
        if coding is None:
            return self.inner.send_response(status, with_vary(headers))
        return self._start(status, headers, fields, coding)

    async def _start(self, status: int, headers: Headers, fields: ResponseFields,
                     coding: str) -> None:
        self.coding = coding
        if fields.content_length is not None:
            self.mode, self.want_length = _WHOLE, fields.content_length
            self.held = (status, headers)
            return
        self.mode = _STREAM
        self.encoder = stream_encoder(coding)
        if status >= 400:
            self.held = (status, headers)
            return
        await self.inner.send_response(status, encoded_headers(headers, coding, None))

    def send_data(self, data: bytes, flush: bool = True) -> Awaitable[None]:
        if self.mode == _PASS:  # no coroutine of ours for a body passed on
            return self.inner.send_data(data, flush)
        return self._encode_data(data, flush)

    async def _encode_data(self, data: bytes, flush: bool) -> None:
        if not data:
            if flush and self.unflushed:  # a flush() with nothing new: out with the rest
                assert self.encoder is not None
                self.unflushed = False
                if out := self.encoder.compress(b"", True):
                    await self.inner.send_data(out)
            return
        coding = self.coding
        assert coding is not None
        if self.mode == _WHOLE:
            assert self.held is not None
            status, headers = self.held
            self.held = None
            if len(data) == self.want_length:
                body = await _encode(data, functools.partial(compress_whole, coding))
                self.mode = _PASS  # the body is complete: anything after is not ours to encode
                await self.inner.send_response(status, encoded_headers(headers, coding, len(body)))
                await self.inner.send_data(body)
                return
            # the body comes in pieces (a file streamed from disk): stream it
            self.mode = _STREAM
            self.encoder = stream_encoder(coding)
            self.held = (status, headers)
        if self.held is not None:
            status, headers = self.held
            self.held = None
            await self.inner.send_response(status, encoded_headers(headers, coding, None))
        encoder = self.encoder
        assert encoder is not None
        self.unflushed = not flush
        out = await _encode(data, functools.partial(encoder.compress, flush=flush))
        if out:
            await self.inner.send_data(out, flush)

    def end(self) -> Awaitable[None]:
        if self.mode == _PASS and self.held is None:
            return self.inner.end()
        return self._end()

    async def _end(self) -> None:
        if self.held is not None:
            # nothing came: the identity head, as the empty answer it is
            status, headers = self.held
            self.held = None
            self.mode = _PASS
            await self.inner.send_response(status, with_vary(headers))
        elif self.mode == _STREAM:
            assert self.encoder is not None
            tail = self.encoder.finish()
            self.mode = _PASS
            if tail:
                await self.inner.send_data(tail)
        await self.inner.end()


async def _encode(data: bytes, encode: Callable[[bytes], bytes]) -> bytes:
    """`encode(data)`, in the thread executor when `data` is big enough to hold up the loop."""
    if len(data) < OFFLOAD_BYTES:
        return encode(data)
    return await asyncio.get_running_loop().run_in_executor(None, encode, data)


def compress_with(policy: CompressionPolicy) -> Middleware:
    def wrap(app: App) -> App:
        def compressed(ctx: RequestContext) -> Awaitable[None]:
            return app(_Compressing(ctx, policy))

        return compressed

    return wrap


def compression(config: Config) -> Middleware:
    return compress_with(CompressionPolicy.from_config(config))
