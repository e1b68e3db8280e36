"""Static-file responses driven through a recording RequestContext."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import StaticFileChanged, StaticFiles, content_type_for
from gateway.protocol.events import Headers, Request


class RecordingContext:
    """Stands in for a connection: records what the pipeline sends."""

    def __init__(self, request: Request, *, disconnect_after: int | None = None) -> None:
        self.request = request
        self.client = ("127.0.0.1", 50000)
        self.server = ("127.0.0.1", 8080)
        self.tls = False
        self.disconnected = asyncio.Event()
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.ended = False
        self._disconnect_after = disconnect_after

    async def receive(self) -> bytes | None:
        return None

    async def send_response(self, status: int, headers: Headers) -> None:
        assert self.status is None, "response started twice"
        names = [n for n, _ in headers]
        assert len(names) == len(set(names)), f"duplicate headers {names}"
        self.status, self.headers = status, dict(headers)

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        assert self.status is not None and not self.ended
        self.chunks.append(data)
        if self._disconnect_after is not None and len(self.chunks) >= self._disconnect_after:
            self.disconnected.set()

    async def end(self) -> None:
        assert not self.ended
        self.ended = True

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def route_for(path: Path) -> StaticFile:
    st = path.stat()
    return StaticFile(path, st.st_size, st.st_mtime_ns)


def request(method: bytes = b"GET", **headers: str) -> Request:
    hdrs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request(1, method, b"/x", hdrs, "1.1")


async def serve(files: StaticFiles, path: Path, req: Request, **kw: int) -> RecordingContext:
    ctx = RecordingContext(req, **kw)
    await files.serve(ctx, route_for(path))
    return ctx


@pytest.fixture
def small(tmp_path: Path) -> Path:
    p = tmp_path / "hello.txt"
    p.write_bytes(b"hello, static world\n")
    os.utime(p, (1_700_000_000, 1_700_000_000))
    return p


@pytest.fixture
def large(tmp_path: Path) -> Path:
    p = tmp_path / "big.bin"
    p.write_bytes(bytes(range(256)) * 2048 + b"tail")  # 512 KiB + 4: above the memory cache
    return p


async def test_get_small_file(small: Path) -> None:
    ctx = await serve(StaticFiles(86400), small, request())
    assert ctx.status == 200
    assert ctx.body == b"hello, static world\n"
    assert ctx.ended
    assert ctx.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert ctx.headers[b"content-length"] == b"20"
    assert ctx.headers[b"etag"] == b'"%x-14"' % 1_700_000_000
    assert ctx.headers[b"last-modified"] == b"Tue, 14 Nov 2023 22:13:20 GMT"
    assert ctx.headers[b"cache-control"] == b"public, max-age=86400"
    assert ctx.headers[b"accept-ranges"] == b"bytes"


async def test_cache_control_omitted_when_off(small: Path) -> None:
    ctx = await serve(StaticFiles(None), small, request())
    assert ctx.status == 200
    assert b"cache-control" not in ctx.headers


async def test_head_has_get_headers_and_no_body(small: Path) -> None:
    ctx = await serve(StaticFiles(60), small, request(b"HEAD"))
    assert ctx.status == 200
    assert ctx.chunks == []
    assert ctx.ended
    assert ctx.headers[b"content-length"] == b"20"
    assert ctx.headers[b"etag"]


async def test_other_methods_get_405(small: Path) -> None:
    ctx = await serve(StaticFiles(60), small, request(b"POST"))
    assert ctx.status == 405
    assert ctx.headers[b"allow"] == b"GET, HEAD"
    assert ctx.body == b""


async def test_if_none_match_gives_304(small: Path) -> None:
    files = StaticFiles(60)
    etag = (await serve(files, small, request())).headers[b"etag"].decode()
    for header in (etag, f'W/{etag}', f'"nope", {etag}', "*"):
        ctx = await serve(files, small, request(if_none_match=header))
        assert ctx.status == 304, header
        assert ctx.body == b""
        assert ctx.headers[b"etag"] == etag.encode()
        assert b"content-length" not in ctx.headers
    ctx = await serve(files, small, request(if_none_match='"other"'))
    assert ctx.status == 200


async def test_if_modified_since(small: Path) -> None:
    files = StaticFiles(60)
    assert (await serve(files, small, request(
        if_modified_since="Tue, 14 Nov 2023 22:13:20 GMT"))).status == 304
    assert (await serve(files, small, request(
        if_modified_since="Wed, 15 Nov 2023 00:00:00 GMT"))).status == 304
    assert (await serve(files, small, request(
        if_modified_since="Tue, 14 Nov 2023 22:13:19 GMT"))).status == 200
    assert (await serve(files, small, request(if_modified_since="garbage"))).status == 200


async def test_if_none_match_wins_over_if_modified_since(small: Path) -> None:
    ctx = await serve(StaticFiles(60), small, request(
        if_none_match='"other"', if_modified_since="Wed, 15 Nov 2023 00:00:00 GMT"))
    assert ctx.status == 200


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("bytes=0-4", 0, 4), ("bytes=7-", 7, 19), ("bytes=-6", 14, 19), ("bytes=5-999", 5, 19),
     ("bytes=-999", 0, 19)],
)
async def test_single_range_gives_206(small: Path, spec: str, start: int, end: int) -> None:
    ctx = await serve(StaticFiles(60), small, request(range=spec))
    assert ctx.status == 206
    assert ctx.body == small.read_bytes()[start : end + 1]
    assert ctx.headers[b"content-range"] == f"bytes {start}-{end}/20".encode()
    assert ctx.headers[b"content-length"] == str(end - start + 1).encode()


@pytest.mark.parametrize("spec", ["bytes=20-", "bytes=100-200", "bytes=-0"])
async def test_unsatisfiable_range_gives_416(small: Path, spec: str) -> None:
    ctx = await serve(StaticFiles(60), small, request(range=spec))
    assert ctx.status == 416
    assert ctx.headers[b"content-range"] == b"bytes */20"
    assert ctx.headers[b"content-length"] == b"0"
    assert ctx.body == b""


@pytest.mark.parametrize("spec", ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=a-b"])
async def test_ignored_ranges_give_whole_file(small: Path, spec: str) -> None:
    ctx = await serve(StaticFiles(60), small, request(range=spec))
    assert ctx.status == 200
    assert ctx.body == small.read_bytes()


async def test_if_range(small: Path) -> None:
    files = StaticFiles(60)
    etag = (await serve(files, small, request())).headers[b"etag"].decode()
    assert (await serve(files, small, request(range="bytes=0-1", if_range=etag))).status == 206
    assert (await serve(files, small, request(
        range="bytes=0-1", if_range="Tue, 14 Nov 2023 22:13:20 GMT"))).status == 206
    stale = await serve(files, small, request(range="bytes=0-1", if_range='"stale"'))
    assert stale.status == 200
    assert stale.body == small.read_bytes()


async def test_large_file_is_streamed_in_chunks(large: Path) -> None:
    ctx = await serve(StaticFiles(60, chunk_size=64 * 1024), large, request())
    assert ctx.status == 200
    assert ctx.body == large.read_bytes()
    assert ctx.headers[b"content-length"] == str(large.stat().st_size).encode()
    assert ctx.headers[b"content-type"] == b"application/octet-stream"
    assert [len(c) for c in ctx.chunks] == [65536] * 8 + [4]
    assert ctx.ended


async def test_large_file_range_and_head(large: Path) -> None:
    files = StaticFiles(60)
    data = large.read_bytes()
    ctx = await serve(files, large, request(range="bytes=100000-400000"))
    assert ctx.status == 206
    assert ctx.body == data[100000:400001]
    head = await serve(files, large, request(b"HEAD"))
    assert head.status == 200 and head.chunks == []
    assert head.headers[b"content-length"] == str(len(data)).encode()


async def test_large_file_304_does_not_send(large: Path) -> None:
    files = StaticFiles(60)
    etag = (await serve(files, large, request(b"HEAD"))).headers[b"etag"].decode()
    ctx = await serve(files, large, request(if_none_match=etag))
    assert ctx.status == 304 and ctx.body == b""


async def test_stream_stops_when_peer_disconnects(large: Path) -> None:
    ctx = await serve(StaticFiles(60), large, request(), disconnect_after=2)
    assert len(ctx.chunks) == 2
    assert not ctx.ended


async def test_small_files_come_from_memory(small: Path) -> None:
    files = StaticFiles(60)
    route = route_for(small)
    first = RecordingContext(request())
    await files.serve(first, route)
    small.write_bytes(b"HELLO, STATIC WORLD\n")  # same size and mtime: same cache key
    os.utime(small, ns=(route.mtime_ns, route.mtime_ns))
    second = RecordingContext(request())
    await files.serve(second, route_for(small))
    assert second.body == b"hello, static world\n"


async def test_changed_file_is_reloaded(small: Path) -> None:
    files = StaticFiles(60)
    await serve(files, small, request())
    small.write_bytes(b"new content")
    ctx = await serve(files, small, request())
    assert ctx.body == b"new content"
    assert ctx.headers[b"content-length"] == b"11"


async def test_vanished_file_gives_empty_404(small: Path) -> None:
    route = route_for(small)
    small.unlink()
    ctx = RecordingContext(request())
    await StaticFiles(60).serve(ctx, route)
    assert ctx.status == 404 and ctx.body == b"" and ctx.headers[b"content-length"] == b"0"


async def test_file_shrinking_mid_stream_raises(large: Path) -> None:
    files = StaticFiles(60)
    response = await files.prepare(request(), route_for(large))
    os.truncate(large, 100)
    with pytest.raises(StaticFileChanged):
        await files.send(RecordingContext(request()), response)


async def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.css"
    p.write_bytes(b"")
    ctx = await serve(StaticFiles(60), p, request(range="bytes=0-"))
    assert ctx.status == 200 and ctx.body == b""
    assert ctx.headers[b"content-length"] == b"0"


@pytest.mark.parametrize(
    ("name", "ctype"),
    [("a.html", b"text/html; charset=utf-8"), ("a.CSS", b"text/css; charset=utf-8"),
     ("a.js", b"text/javascript; charset=utf-8"), ("a.json", b"application/json; charset=utf-8"),
     ("a.svg", b"image/svg+xml; charset=utf-8"), ("a.png", b"image/png"),
     ("a.woff2", b"font/woff2"), ("a.wasm", b"application/wasm"),
     ("a.tar.gz", b"application/gzip"), ("a.unknownext", b"application/octet-stream"),
     ("noext", b"application/octet-stream"), ("a.mp4", b"video/mp4")],
)
def test_content_types(name: str, ctype: bytes) -> None:
    assert content_type_for(name) == ctype
