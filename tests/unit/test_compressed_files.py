"""Static files' compressed forms: precompressed siblings, the cache made in the background,
its bound, and the headers of encoded answers and their 304s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from recording_context import RecordingContext, request

from gateway.pipeline.compressed_files import CompressedFiles
from gateway.pipeline.compressors import BEST, compress_whole, decompress
from gateway.pipeline.encoding import CompressionPolicy
from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import StaticFiles
from gateway.protocol.events import Headers

CSS = b"".join(b".rule-%d { color: #%06x; margin: %dpx; }\n" % (i, i * 997, i % 40)
               for i in range(800))  # ~33 KB of stylesheet
MTIME = 1_700_000_000
ALL = (b"accept-encoding", b"gzip, deflate, br, zstd")


def write(path: Path, data: bytes, mtime: int = MTIME) -> Path:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def route(path: Path) -> StaticFile:
    st = path.stat()
    return StaticFile(path, st.st_size, st.st_mtime_ns)


def static(**kw: int) -> tuple[StaticFiles, CompressedFiles]:
    compressed = CompressedFiles(CompressionPolicy(), **kw)
    return StaticFiles(3600, compressed=compressed), compressed


async def get(files: StaticFiles, path: Path, *headers: tuple[bytes, bytes],
              method: bytes = b"GET") -> RecordingContext:
    ctx = RecordingContext(request(method=method, headers=list(headers)))
    await files.serve(ctx, route(path))
    assert ctx.ended
    return ctx


@pytest.fixture
def css(tmp_path: Path) -> Path:
    return write(tmp_path / "app.css", CSS)


async def test_fresh_sibling_is_served_as_it_is(css: Path) -> None:
    sibling = write(Path(f"{css}.br"), compress_whole("br", CSS, 5), MTIME + 5)
    files, _ = static()
    ctx = await get(files, css, ALL, (b"accept-encoding", b"zstd;q=0"))
    assert ctx.status == 200
    assert ctx.header(b"content-encoding") == b"br"
    assert ctx.body == sibling.read_bytes()
    assert decompress("br", ctx.body) == CSS
    assert ctx.header(b"content-length") == b"%d" % len(ctx.body)
    assert ctx.header(b"etag") == b'W/"%x-%x"' % (MTIME, len(CSS))
    assert ctx.header(b"vary") == b"Accept-Encoding"
    assert ctx.header(b"accept-ranges") is None
    assert ctx.header(b"content-type") == b"text/css; charset=utf-8"
    assert ctx.header(b"last-modified") is not None


async def test_stale_sibling_is_ignored_and_the_best_form_is_made_once(css: Path) -> None:
    write(Path(f"{css}.gz"), b"stale build output", MTIME - 60)
    files, compressed = static()
    gzip_only = (b"accept-encoding", b"gzip")
    first = await get(files, css, gzip_only)
    # not cached yet: the identity answer goes on (the middleware encodes it on the fly)
    assert first.header(b"content-encoding") is None and first.body == CSS
    assert first.header(b"vary") == b"Accept-Encoding"
    await compressed.settled()
    made = compressed.cached(route(css), "gzip")
    assert made == compress_whole("gzip", CSS, BEST["gzip"])
    second = await get(files, css, gzip_only)
    assert second.header(b"content-encoding") == b"gzip"
    assert second.body == made and decompress("gzip", second.body) == CSS


async def test_each_coding_has_its_own_form(css: Path) -> None:
    files, compressed = static()
    for coding in ("zstd", "br", "gzip"):
        await get(files, css, (b"accept-encoding", coding.encode()))
    await compressed.settled()
    for coding in ("zstd", "br", "gzip"):
        ctx = await get(files, css, (b"accept-encoding", coding.encode()))
        assert ctx.header(b"content-encoding") == coding.encode()
        assert decompress(coding, ctx.body) == CSS


async def test_a_changed_file_is_not_answered_from_the_old_form(css: Path) -> None:
    files, compressed = static()
    await get(files, css, ALL)
    await compressed.settled()
    write(css, CSS + b"/* v2 */\n", MTIME + 100)
    ctx = await get(files, css, ALL)
    assert ctx.header(b"content-encoding") is None  # the new version's form is being made
    await compressed.settled()
    ctx = await get(files, css, ALL)
    assert decompress("zstd", ctx.body) == CSS + b"/* v2 */\n"


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    limit = len(compress_whole("br", CSS, BEST["br"])) * 5 // 2  # room for two forms
    files, compressed = static(memory_bytes=limit)
    paths = [write(tmp_path / f"f{i}.css", CSS[i * 100 :]) for i in range(4)]
    for p in paths:
        await get(files, p, (b"accept-encoding", b"br"))
        await compressed.settled()
    sizes = [len(c) for p in paths if (c := compressed.cached(route(p), "br")) is not None]
    assert len(sizes) == 2 and sum(sizes) <= limit
    assert compressed.cached(route(paths[-1]), "br") is not None  # the newest stays
    assert compressed.cached(route(paths[0]), "br") is None  # the oldest went first


async def test_conditional_requests_work_across_encodings(css: Path) -> None:
    write(Path(f"{css}.zst"), compress_whole("zstd", CSS), MTIME)
    files, _ = static()
    encoded = await get(files, css, ALL)
    etag = encoded.header(b"etag")
    assert etag is not None and etag.startswith(b"W/")
    again = await get(files, css, ALL, (b"if-none-match", etag))
    assert again.status == 304 and again.body == b""
    assert again.header(b"etag") == etag  # the validator of the variant this client has
    assert again.header(b"vary") == b"Accept-Encoding"
    plain = await get(files, css, (b"if-none-match", etag))
    assert plain.status == 304  # weak comparison: the identity variant matches too
    assert plain.header(b"etag") == etag.removeprefix(b"W/")


@pytest.mark.parametrize(("headers", "method", "status", "vary"), [
    ([ALL], b"HEAD", 200, True),
    ([ALL, (b"range", b"bytes=0-99")], b"GET", 206, False),
    ([], b"GET", 200, True),
    ([(b"accept-encoding", b"identity")], b"GET", 200, True),
])
async def test_answers_left_unencoded(css: Path, headers: Headers, method: bytes, status: int,
                                      vary: bool) -> None:
    write(Path(f"{css}.zst"), compress_whole("zstd", CSS), MTIME)
    files, _ = static()
    ctx = await get(files, css, *headers, method=method)
    assert ctx.status == status
    assert ctx.header(b"content-encoding") is None
    assert (ctx.header(b"vary") == b"Accept-Encoding") is vary
    if method == b"GET":
        assert ctx.body == (CSS[:100] if status == 206 else CSS)


async def test_small_or_binary_files_get_no_vary(tmp_path: Path) -> None:
    files, _ = static()
    tiny = write(tmp_path / "tiny.css", b"a{}")
    png = write(tmp_path / "x.png", CSS)
    for path in (tiny, png):
        ctx = await get(files, path, ALL)
        assert ctx.header(b"vary") is None and ctx.header(b"content-encoding") is None


async def test_large_sibling_is_streamed_from_disk(tmp_path: Path) -> None:
    big = b"".join(b"line %d of a large javascript bundle;\n" % i for i in range(20000))
    js = write(tmp_path / "bundle.js", big)
    sibling = write(Path(f"{js}.gz"), compress_whole("gzip", big, 9), MTIME)
    files, _ = static(max_in_memory=32 * 1024)
    assert sibling.stat().st_size > 32 * 1024  # so it is streamed, not cached
    ctx = await get(files, js, (b"accept-encoding", b"gzip"))
    assert ctx.header(b"content-encoding") == b"gzip"
    assert ctx.header(b"content-length") == b"%d" % sibling.stat().st_size
    assert decompress("gzip", ctx.body) == big


async def test_a_sibling_the_client_accepts_wins_over_making_its_first_coding(css: Path) -> None:
    sibling = write(Path(f"{css}.gz"), compress_whole("gzip", CSS, 9), MTIME)
    files, compressed = static()
    ctx = await get(files, css, ALL)  # zstd first, but the operator shipped .gz
    assert ctx.header(b"content-encoding") == b"gzip" and ctx.body == sibling.read_bytes()
    await compressed.settled()
    assert compressed.cached(route(css), "zstd") is None  # nothing of our own was made


async def test_a_form_made_for_one_client_is_not_forced_on_another(css: Path) -> None:
    files, compressed = static()
    await get(files, css, (b"accept-encoding", b"gzip"))
    await compressed.settled()
    ctx = await get(files, css, ALL)  # a browser: its zstd form is made, gzip's not reused
    assert ctx.header(b"content-encoding") is None
    await compressed.settled()
    ctx = await get(files, css, ALL)
    assert ctx.header(b"content-encoding") == b"zstd"
    assert decompress("zstd", ctx.body) == CSS
