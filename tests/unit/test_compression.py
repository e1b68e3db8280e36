"""The compression middleware driven with a recording context: which answers are encoded,
how their headers change, that streamed chunks leave flushed, and that big bodies are
compressed off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import pytest
from recording_context import RecordingContext, request

from gateway.pipeline import compression
from gateway.pipeline.chain import compose
from gateway.pipeline.compressors import decompress
from gateway.pipeline.context import RequestContext
from gateway.pipeline.encoding import CompressionPolicy
from gateway.pipeline.error_pages import PageSet, builtin_page, serve_pages
from gateway.protocol.events import Headers

Endpoint = Callable[[RequestContext], Awaitable[None]]
HTML = b"<!doctype html><title>t</title>" + b"<p>Compressible paragraph of text.</p>\n" * 600
BROWSER_AE = [(b"accept-encoding", b"gzip, deflate, br, zstd")]


class ChunkRecorder(RecordingContext):
    """Also keeps each chunk as it was sent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.chunks: list[bytes] = []

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        await super().send_data(data, flush)
        self.chunks.append(data)


def answer(status: int, headers: Headers, chunks: list[bytes]) -> Endpoint:
    async def endpoint(ctx: RequestContext) -> None:
        await ctx.send_response(status, headers)
        for chunk in chunks:
            await ctx.send_data(chunk)
        await ctx.end()
    return endpoint


def whole(body: bytes, ctype: bytes = b"text/html; charset=UTF-8",
          extra: Headers | None = None, status: int = 200) -> Endpoint:
    """PHP's complete-body answer (or a static file from memory): one chunk, its length."""
    headers = [(b"content-type", ctype), *(extra or []),
               (b"content-length", b"%d" % len(body))]
    return answer(status, headers, [body])


async def run(endpoint: Endpoint, headers: Headers | None = None, method: bytes = b"GET",
              policy: CompressionPolicy | None = None) -> ChunkRecorder:
    ctx = ChunkRecorder(request(method=method, headers=headers))
    await compression.compress_with(policy or CompressionPolicy())(endpoint)(ctx)
    assert ctx.ended
    return ctx


@pytest.mark.parametrize(("accept", "coding"), [
    (b"gzip, deflate, br, zstd", "zstd"), (b"gzip, br", "br"), (b"gzip", "gzip"),
    (b"br;q=0.5, gzip", "gzip"),
])
async def test_complete_body_is_compressed_with_its_new_length(accept: bytes,
                                                              coding: str) -> None:
    endpoint = whole(HTML, extra=[(b"etag", b'"abc"'), (b"accept-ranges", b"bytes"),
                                  (b"set-cookie", b"a=1")])
    ctx = await run(endpoint, [(b"accept-encoding", accept)])
    assert ctx.status == 200
    assert ctx.header(b"content-encoding") == coding.encode()
    assert ctx.header(b"content-length") == b"%d" % len(ctx.body)
    assert len(ctx.body) < len(HTML) // 10
    assert decompress(coding, ctx.body) == HTML
    assert ctx.header(b"vary") == b"Accept-Encoding"
    assert ctx.header(b"etag") == b'W/"abc"'
    assert ctx.header(b"accept-ranges") is None
    assert ctx.header(b"set-cookie") == b"a=1"
    assert ctx.header(b"content-type") == b"text/html; charset=UTF-8"


async def test_order_is_the_configured_one() -> None:
    policy = CompressionPolicy(encodings=("gzip", "zstd"))
    ctx = await run(whole(HTML), BROWSER_AE, policy=policy)
    assert ctx.header(b"content-encoding") == b"gzip"
    assert decompress("gzip", ctx.body) == HTML


async def test_client_without_accept_encoding_gets_identity_and_vary() -> None:
    ctx = await run(whole(HTML, extra=[(b"vary", b"Cookie"), (b"etag", b'"abc"')]))
    assert ctx.body == HTML
    assert ctx.header(b"content-encoding") is None
    assert ctx.header(b"content-length") == b"%d" % len(HTML)
    assert ctx.header(b"vary") == b"Cookie, Accept-Encoding"
    assert ctx.header(b"etag") == b'"abc"'  # identity keeps its strong validator


@pytest.mark.parametrize(("endpoint", "why"), [
    (whole(b"<p>short</p>" * 20), "below COMPRESSION_MIN_SIZE"),
    (whole(HTML, b"image/png"), "type not in COMPRESSION_TYPES"),
    (whole(HTML, extra=[(b"cache-control", b"no-transform")]), "no-transform"),
    (whole(HTML, extra=[(b"content-range", b"bytes 0-99/5000")], status=206), "206"),
    (answer(204, [(b"content-type", b"text/html")], []), "204"),
    (answer(304, [(b"content-type", b"text/html"), (b"etag", b'"abc"')], []), "304"),
])
async def test_left_alone(endpoint: Endpoint, why: str) -> None:
    plain = RecordingContext(request())
    await endpoint(plain)
    ctx = await run(endpoint, BROWSER_AE)
    assert (ctx.status, ctx.headers, ctx.body) == (plain.status, plain.headers, plain.body), why
    assert ctx.header(b"vary") is None


async def test_an_encoded_answer_is_not_encoded_twice() -> None:
    """PHP's ob_gzhandler / zlib.output_compression: the body is gzip already."""
    import zlib

    gz = zlib.compress(HTML, wbits=31)
    endpoint = whole(gz, extra=[(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")])
    ctx = await run(endpoint, BROWSER_AE)
    assert ctx.header(b"content-encoding") == b"gzip"
    assert ctx.body == gz and decompress("gzip", ctx.body) == HTML


async def test_head_gets_vary_but_no_encoding() -> None:
    ctx = await run(answer(200, [(b"content-type", b"text/html")], []), BROWSER_AE,
                    method=b"HEAD")
    assert ctx.header(b"content-encoding") is None
    assert ctx.header(b"vary") == b"Accept-Encoding"


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
async def test_streamed_output_leaves_flushed_chunk_by_chunk(coding: str) -> None:
    """PHP's flush() / SSE: no Content-Length; every chunk is decodable when it is sent."""
    events = [b"data: event %d\n\n" % i for i in range(4)]
    sent: list[int] = []

    async def endpoint(ctx: RequestContext) -> None:
        await ctx.send_response(200, [(b"content-type", b"text/event-stream")])
        for event in events:
            await ctx.send_data(event)
            sent.append(len(recorder.chunks))  # how many chunks had left by then
        await ctx.end()

    recorder = ChunkRecorder(request(headers=[(b"accept-encoding", coding.encode())]))
    await compression.compress_with(CompressionPolicy())(endpoint)(recorder)
    assert recorder.header(b"content-encoding") == coding.encode()
    assert recorder.header(b"content-length") is None
    assert sent == [1, 2, 3, 4]  # one compressed chunk per event, at once
    decoder = _stream_decoder(coding)
    for i, chunk in enumerate(recorder.chunks[:4]):
        assert decoder(chunk) == events[i]  # each event whole on its own chunk
    assert decompress(coding, recorder.body) == b"".join(events)


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
async def test_unflushed_output_is_held_until_a_flush(coding: str) -> None:
    """PHP's output_buffering spills (flush=False) compress as one stream: nothing leaves
    for small spills until PHP's flush(), which then carries all of them, decodable."""
    spills = [b"<p>row %d of a table rendered by PHP</p>\n" % i * 20 for i in range(3)]
    seen: list[int] = []

    async def endpoint(ctx: RequestContext) -> None:
        await ctx.send_response(200, [(b"content-type", b"text/html")])
        for spill in spills:
            await ctx.send_data(spill, False)
        seen.append(len(b"".join(recorder.chunks)))
        await ctx.send_data(b"", True)  # flush() with nothing new
        seen.append(len(recorder.chunks))
        await ctx.send_data(b"", True)  # a second one has nothing to flush
        seen.append(len(recorder.chunks))
        await ctx.end()

    recorder = ChunkRecorder(request(headers=[(b"accept-encoding", coding.encode())]))
    await compression.compress_with(CompressionPolicy())(endpoint)(recorder)
    held, after_flush, after_second = seen
    assert held < len(b"".join(spills)) // 4  # at most a header: the rows are held
    assert after_second == after_flush
    flushed = b"".join(recorder.chunks[:after_flush])
    assert _stream_decoder(coding)(flushed) == b"".join(spills)
    assert decompress(coding, recorder.body) == b"".join(spills)


async def test_complete_length_in_pieces_is_streamed_without_length() -> None:
    """A Content-Length body sent in several chunks (a big static file from disk)."""
    halves = [HTML[: len(HTML) // 2], HTML[len(HTML) // 2 :]]
    endpoint = answer(200, [(b"content-type", b"text/css"),
                            (b"content-length", b"%d" % len(HTML))], halves)
    ctx = await run(endpoint, [(b"accept-encoding", b"br")])
    assert ctx.header(b"content-encoding") == b"br"
    assert ctx.header(b"content-length") is None
    assert decompress("br", ctx.body) == HTML


async def test_streamed_error_that_stays_empty_is_sent_empty() -> None:
    """PHP's 500 after a fatal error (display_errors off): no encoder frame, no encoding."""
    ctx = await run(answer(500, [(b"content-type", b"text/html")], []), BROWSER_AE)
    assert ctx.status == 500 and ctx.body == b""
    assert ctx.header(b"content-encoding") is None
    assert ctx.header(b"vary") == b"Accept-Encoding"


async def test_streamed_error_with_a_body_is_compressed() -> None:
    ctx = await run(answer(404, [(b"content-type", b"text/html")], [HTML]), BROWSER_AE)
    assert ctx.status == 404 and ctx.header(b"content-encoding") == b"zstd"
    assert decompress("zstd", ctx.body) == HTML


async def test_error_pages_still_replace_an_empty_php_error() -> None:
    """Error pages sit outside compression: an empty PHP 500 still becomes the page."""
    app = compose([serve_pages(PageSet(None)), compression.compress_with(CompressionPolicy())],
                  answer(500, [(b"content-type", b"text/html")], []))
    ctx = ChunkRecorder(request(headers=[(b"accept", b"text/html"), *BROWSER_AE]))
    await app(ctx)
    assert ctx.status == 500 and ctx.body == builtin_page(500)
    assert ctx.header(b"content-encoding") is None


async def test_big_bodies_are_compressed_off_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = compression.compress_whole

    def spy(coding: str, data: bytes, level: int | None = None) -> bytes:
        threads.append(threading.get_ident())
        return real(coding, data, level)

    monkeypatch.setattr(compression, "compress_whole", spy)
    big = HTML * 40  # ~1 MB
    ctx = await run(whole(big), BROWSER_AE)
    assert decompress("zstd", ctx.body) == big
    small = await run(whole(HTML), BROWSER_AE)
    assert decompress("zstd", small.body) == HTML
    loop_thread = threading.get_ident()
    assert threads[0] != loop_thread  # 1 MB: in the executor
    assert threads[1] == loop_thread  # 24 KB: inline, cheaper than a thread hop


def _stream_decoder(coding: str) -> Callable[[bytes], bytes]:
    import zlib

    import brotli
    import zstandard

    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "br":
        d = brotli.Decompressor()
        return lambda data: bytes(d.process(data))
    return zstandard.ZstdDecompressor().decompressobj().decompress  # type: ignore[no-any-return]


def test_compression_is_the_innermost_middleware_when_on() -> None:
    from gateway.config import load_config
    from gateway.pipeline.chain import middleware_for

    on = middleware_for(load_config(["--document-root", "."], {}))
    assert on[-1].__qualname__ == "compress_with.<locals>.wrap"
    off = middleware_for(load_config(["--document-root", ".", "--compression", "off"], {}))
    assert all(m.__qualname__ != "compress_with.<locals>.wrap" for m in off)
