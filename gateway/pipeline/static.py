"""Serves a resolved static file through a RequestContext.

`prepare()` turns (request, StaticFile route) into a `StaticResponse` — status, headers and
either the whole body in memory (files up to 256 KiB, kept in a bounded LRU keyed by path,
mtime and size) or an open file region to stream. A body in memory is a `FileBytes` whose
file descriptor is kept open (a bounded number of them: gateway/pipeline/file_body.py), so
that HTTP/1.1 over plain TCP sends it with sendfile(2); everything else reads its bytes.
`send()` writes it out: streamed files go in 64 KiB chunks read with os.pread in the default
executor, one chunk read ahead, each sent through `send_data` so the socket's backpressure
paces the disk. With COMPRESSION on, `prepare()` answers a client that accepts zstd, br or
gzip with the file's compressed form when there is one (a precompressed sibling or a cached
one: gateway/pipeline/compressed_files.py); other compressible answers are encoded on the
fly by the compression middleware.
`serve()` is prepare + send.

HTTP behaviour (nginx-compatible): ETag `"<mtime hex>-<size hex>"`, Last-Modified, 304 on
If-None-Match (weak comparison, wins over If-Modified-Since) or If-Modified-Since, one byte
range per request (206 / 416; several ranges or an If-Range that does not match get the
whole file), HEAD with the GET headers and no body, content-length on every 200/206/416,
Cache-Control `public, max-age=STATIC_CACHE_TTL` unless that is off, 405 for methods other
than GET and HEAD. A file that vanished or cannot be opened gives an empty 404 / 403 for the
error-page stage to fill.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.pipeline.context import RequestContext
from gateway.pipeline.file_body import FileBytes, OpenFile, OpenFiles, file_bytes
from gateway.pipeline.routing import StaticFile
from gateway.protocol.events import Headers, Request

if TYPE_CHECKING:
    from gateway.pipeline.compressed_files import CompressedFiles

T = TypeVar("T")
CHUNK_SIZE = 64 * 1024
MAX_CACHED_FILE = 256 * 1024
MEMORY_CACHE_BYTES = 32 * 1024 * 1024
MAX_CACHE_ENTRIES = 8192

# Curated because the system mime.types differs between hosts; mimetypes is the fallback.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css",
    ".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".json": "application/json", ".map": "application/json", ".jsonld": "application/ld+json",
    ".webmanifest": "application/manifest+json", ".xml": "application/xml",
    ".rss": "application/rss+xml", ".atom": "application/atom+xml",
    ".txt": "text/plain", ".md": "text/markdown", ".csv": "text/csv",
    ".ics": "text/calendar", ".vtt": "text/vtt", ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
    ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".wasm": "application/wasm", ".pdf": "application/pdf", ".zip": "application/zip",
    ".gz": "application/gzip", ".tgz": "application/gzip", ".br": "application/x-brotli",
    ".zst": "application/zstd", ".tar": "application/x-tar", ".7z": "application/x-7z-compressed",
    ".mp4": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg", ".mov": "video/quicktime",
    ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".wav": "audio/wav",
    ".m4a": "audio/mp4", ".flac": "audio/flac", ".aac": "audio/aac", ".opus": "audio/opus",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"  # nginx default_type
_CHARSET_TYPES = frozenset({
    "application/json", "application/ld+json", "application/manifest+json", "application/xml",
    "application/rss+xml", "application/atom+xml", "application/yaml", "image/svg+xml",
})
_MIME = mimetypes.MimeTypes()  # built-in table only, not the host's /etc/mime.types


def content_type_for(path: Path | str) -> bytes:
    """Content-Type for a file name, with `; charset=utf-8` on text types."""
    suffix = os.path.splitext(path)[1].lower()
    ctype = CONTENT_TYPES.get(suffix)
    if ctype is None:
        guessed, encoding = _MIME.guess_type("x" + suffix, strict=False)
        ctype = guessed if guessed and not encoding else DEFAULT_CONTENT_TYPE
    if ctype.startswith("text/") or ctype in _CHARSET_TYPES:
        ctype += "; charset=utf-8"
    return ctype.encode("ascii")


class StaticFileChanged(Exception):
    """The file shrank while streaming: the response can no longer match its content-length;
    the connection layer must abort the stream (reset / close) rather than end it."""


@dataclass(slots=True)
class _Entry:
    size: int
    mtime: int  # whole seconds, the resolution of Last-Modified
    etag: bytes
    last_modified: bytes
    content_type: bytes
    body: FileBytes | None  # None: too large to keep, streamed from disk
    ok_headers: tuple[tuple[bytes, bytes], ...] | None = None  # of a plain 200, made once
    encodable: bool | None = None  # whether the compressed forms concern it, asked once


@dataclass(slots=True)
class FileRegion:
    """Bytes [offset, offset+length) of an open file; `send()` closes fd."""

    fd: int
    offset: int
    length: int


@dataclass(slots=True)
class StaticResponse:
    status: int
    headers: Headers
    content_type: bytes = b""
    body: bytes = b""  # whole body when held in memory
    region: FileRegion | None = None  # or the file region to stream
    send_body: bool = True  # False for HEAD and body-less statuses
    etag: bytes = b""
    span: tuple[int, int] | None = None  # (start, length) of a 206

    def close(self) -> None:
        """Release the file if the response will not be sent."""
        if self.region is not None:
            os.close(self.region.fd)
            self.region = None


class StaticFiles:
    def __init__(
        self,
        cache_ttl: int | None,
        *,
        max_cached_file: int = MAX_CACHED_FILE,
        memory_cache_bytes: int = MEMORY_CACHE_BYTES,
        chunk_size: int = CHUNK_SIZE,
        executor: Executor | None = None,
        compressed: CompressedFiles | None = None,
    ) -> None:
        self._cache_control = (
            None if cache_ttl is None else f"public, max-age={cache_ttl}".encode("ascii")
        )
        self._max_cached_file = max_cached_file
        self._memory_limit = memory_cache_bytes
        self._chunk = chunk_size
        self._executor = executor
        self._compressed = compressed
        self._cache: OrderedDict[tuple[str, int, int], _Entry] = OrderedDict()
        self._cached_bytes = 0
        self._open = OpenFiles()  # descriptors of cached files, for sendfile (file_body.py)
        self._reopening: set[str] = set()

    async def serve(self, ctx: RequestContext, route: StaticFile) -> None:
        await self.send(ctx, await self.prepare(ctx.request, route))

    async def prepare(self, request: Request, route: StaticFile) -> StaticResponse:
        if request.method not in (b"GET", b"HEAD"):
            return _empty(405, [(b"allow", b"GET, HEAD")])
        head = request.method == b"HEAD"
        key = (str(route.path), route.mtime_ns, route.size)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            body = entry.body
            if body is not None and body.file is not None:
                if body.file.fd >= 0:
                    self._open.touch(body.file)
                else:
                    self._reopen(key[0], body)
        elif route.size > self._max_cached_file:
            entry = _entry(route.path, route.size, route.mtime_ns, None)  # no I/O until needed
            self._remember(key, entry)
        else:
            loaded = await self._load_in_thread(route.path)
            if isinstance(loaded, int):
                return _empty(loaded)
            entry = loaded
            self._remember(key, entry)
        response = self._respond(entry, request.headers, head)
        compressed = self._compressed
        if compressed is not None and response.status in (200, 304):
            if entry.encodable is None:
                entry.encodable = compressed.concerns(entry.content_type, entry.size)
            if entry.encodable:
                encoded = await compressed.encode(request, route, entry.content_type,
                                                  entry.body, response)
                if encoded is not None:
                    return encoded
        if entry.body is not None or not response.send_body or response.status >= 300:
            return response
        opened = await self._run(open_regular, route.path)
        if isinstance(opened, int):
            return _empty(opened)
        fd, st = opened
        if (st.st_size, st.st_mtime_ns) != (route.size, route.mtime_ns):
            # changed since routing looked: describe the file actually opened
            entry = _entry(route.path, st.st_size, st.st_mtime_ns, None)
            response = self._respond(entry, request.headers, head)
            if response.status >= 300:
                os.close(fd)
                return response
        start, length = response.span or (0, entry.size)
        response.region = FileRegion(fd, start, length)
        return response

    async def send(self, ctx: RequestContext, response: StaticResponse) -> None:
        region = response.region
        if region is None:  # the body in memory, or none
            await ctx.send_response(response.status, response.headers)
            if response.send_body and response.body:
                await ctx.send_data(response.body)
            await ctx.end()  # a no-op once the client is gone
            return
        response.region = None
        try:
            await ctx.send_response(response.status, response.headers)
            if response.send_body:
                if region is not None:
                    if not await self._stream(ctx, region):
                        return
                elif response.body:
                    await ctx.send_data(response.body)
            if not ctx.disconnected.is_set():
                await ctx.end()
        finally:
            if region is not None and region.fd >= 0:
                os.close(region.fd)

    # ------------------------------------------------------------ internals

    async def _stream(self, ctx: RequestContext, region: FileRegion) -> bool:
        """Send the region; False when the peer went away. Closes region.fd itself."""
        loop = asyncio.get_running_loop()
        fd, offset, remaining = region.fd, region.offset, region.length
        region.fd = -1  # from here on this function owns the descriptor
        pending: asyncio.Future[bytes] | None = None
        try:
            if remaining > 0:
                pending = loop.run_in_executor(
                    self._executor, os.pread, fd, min(self._chunk, remaining), offset
                )
            while pending is not None:
                data = await pending
                pending = None
                if not data:
                    raise StaticFileChanged(f"file shrank with {remaining} bytes left to send")
                offset += len(data)
                remaining -= len(data)
                if remaining > 0:  # read the next chunk while this one goes out
                    pending = loop.run_in_executor(
                        self._executor, os.pread, fd, min(self._chunk, remaining), offset
                    )
                if ctx.disconnected.is_set():
                    return False
                await ctx.send_data(data, False)  # the rest follows: an encoder may hold it
            return not ctx.disconnected.is_set()
        finally:
            if pending is not None and not pending.done():
                # a read is still running in a thread: close only once it has finished
                pending.add_done_callback(lambda _: os.close(fd))
            else:
                os.close(fd)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _load_in_thread(self, path: Path) -> _Entry | int:
        """A small file's entry, its descriptor kept open for sendfile (or closed right away
        should this request be cancelled meanwhile)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._load, path)
        try:
            loaded = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_loaded)
            raise
        if not isinstance(loaded, int) and loaded.body is not None \
                and loaded.body.file is not None:
            self._open.keep(loaded.body.file)
        return loaded

    def _load(self, path: Path) -> _Entry | int:
        """Runs in a thread: a small file's bytes and metadata (its descriptor left open), or
        the HTTP status of failure."""
        opened = open_regular(path)
        if isinstance(opened, int):
            return opened
        fd, st = opened
        try:
            if st.st_size > self._max_cached_file:  # grew since routing: stream it instead
                os.close(fd)
                return _entry(path, st.st_size, st.st_mtime_ns, None)
            data = os.pread(fd, st.st_size, 0)
        except OSError as exc:
            os.close(fd)
            return _status_for(exc)
        file = None
        if len(data) == st.st_size:
            file = OpenFile(fd, str(path), st.st_size, st.st_mtime_ns)
        else:
            os.close(fd)  # changing as we read: serve these bytes, never the descriptor
        return _entry(path, len(data), st.st_mtime_ns, file_bytes(data, file))

    def _reopen(self, path: str, body: FileBytes) -> None:
        """The descriptor of a cached file was closed (too many open): open it again in the
        background; this response goes from memory."""
        if path in self._reopening:
            return
        self._reopening.add(path)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, open_regular, Path(path))
        old = body.file
        assert old is not None

        def opened(f: asyncio.Future[tuple[int, os.stat_result] | int]) -> None:
            self._reopening.discard(path)
            if f.cancelled() or f.exception() is not None:
                return
            result = f.result()
            if isinstance(result, int):
                return
            fd, st = result
            if (st.st_size, st.st_mtime_ns) != (old.size, old.mtime_ns) or body.file is not old:
                os.close(fd)  # another version by now: it gets its own entry
                if body.file is old:
                    body.file = None  # this version is gone: from memory from now on
                return
            body.file = OpenFile(fd, path, old.size, old.mtime_ns)
            self._open.keep(body.file)

        future.add_done_callback(opened)

    def _remember(self, key: tuple[str, int, int], entry: _Entry) -> None:
        self._cache[key] = entry
        self._cached_bytes += len(entry.body or b"")
        while self._cache and (
            self._cached_bytes > self._memory_limit or len(self._cache) > MAX_CACHE_ENTRIES
        ):
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old.body or b"")
            if old.body is not None and old.body.file is not None:
                self._open.drop(old.body.file)

    def _respond(self, entry: _Entry, request_headers: Headers, head: bool) -> StaticResponse:
        asked: dict[bytes, bytes] | None = None
        for name, value in request_headers:
            if name in _ASKS:
                if asked is None:
                    asked = {}
                asked[name] = value  # the last one wins
        if asked is None:  # the common request: the whole file, its head made once
            headers = entry.ok_headers
            if headers is None:
                whole = self._respond_to(entry, False, None, None, None, None)
                headers = entry.ok_headers = tuple(whole.headers)
            # positional: a class called with keywords builds a dict of them first
            return StaticResponse(200, [*headers], entry.content_type, entry.body or b"", None,
                                  not head, entry.etag)
        if_none_match = asked.get(b"if-none-match")
        if_modified_since = asked.get(b"if-modified-since")
        range_header = asked.get(b"range")
        if_range = asked.get(b"if-range")
        return self._respond_to(entry, head, if_none_match, if_modified_since, range_header,
                                if_range)

    def _respond_to(self, entry: _Entry, head: bool, if_none_match: bytes | None,
                    if_modified_since: bytes | None, range_header: bytes | None,
                    if_range: bytes | None) -> StaticResponse:
        validators = [(b"etag", entry.etag), (b"last-modified", entry.last_modified)]
        if self._cache_control is not None:
            validators.append((b"cache-control", self._cache_control))
        if if_none_match is not None:
            not_modified = _etag_matches(if_none_match, entry.etag)
        else:
            not_modified = if_modified_since is not None and _not_modified_since(
                if_modified_since, entry
            )
        if not_modified:
            return StaticResponse(304, validators, send_body=False, etag=entry.etag)

        headers: Headers = [(b"content-type", entry.content_type), *validators,
                            (b"accept-ranges", b"bytes"), (b"x-content-type-options", b"nosniff")]
        span = None
        if range_header is not None and entry.size > 0 and _if_range_holds(if_range, entry):
            span = _parse_range(range_header, entry.size)
        if span == "unsatisfiable":
            return _empty(416, [(b"content-range", f"bytes */{entry.size}".encode("ascii"))])
        response = StaticResponse(200, headers, entry.content_type, entry.body or b"",
                                  send_body=not head, etag=entry.etag)
        if isinstance(span, tuple):
            start, length = span
            response.status = 206
            end = start + length - 1
            headers.append((b"content-range", f"bytes {start}-{end}/{entry.size}".encode("ascii")))
            if entry.body is not None:
                response.body = entry.body[start : start + length]
            response.span = span
        else:
            length = entry.size
        headers.append((b"content-length", b"%d" % length))
        return response


def _entry(path: Path, size: int, mtime_ns: int, body: FileBytes | None) -> _Entry:
    mtime = mtime_ns // 1_000_000_000
    return _Entry(
        size=size,
        mtime=mtime,
        etag=f'"{mtime:x}-{size:x}"'.encode("ascii"),
        last_modified=email.utils.formatdate(mtime, usegmt=True).encode("ascii"),
        content_type=content_type_for(path),
        body=body,
    )


# the request fields that change a static answer: conditionals and ranges
_ASKS = frozenset({b"if-none-match", b"if-modified-since", b"range", b"if-range"})


def _close_loaded(future: asyncio.Future[_Entry | int]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    loaded = future.result()
    if not isinstance(loaded, int) and loaded.body is not None and loaded.body.file is not None:
        loaded.body.file.close()


def open_regular(path: Path) -> tuple[int, os.stat_result] | int:
    """Open a regular file for reading: (fd, fstat) or the HTTP status explaining why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return _status_for(exc)
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return _status_for(exc)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return 404
    return fd, st


def _status_for(exc: OSError) -> int:
    return 403 if isinstance(exc, PermissionError) else 404


def _empty(status: int, headers: Headers | None = None) -> StaticResponse:
    return StaticResponse(status, [*(headers or ()), (b"content-length", b"0")])


def _etag_matches(header: bytes, etag: bytes) -> bool:
    """Weak comparison against an If-None-Match list (RFC 9110 section 13.1.2)."""
    if header.strip() == b"*":
        return True
    bare = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == bare for tag in header.split(b","))


def _http_date(value: bytes) -> int | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return int(parsed.timestamp())


def _not_modified_since(header: bytes, entry: _Entry) -> bool:
    if header == entry.last_modified:
        return True  # the common case: the client echoes our own Last-Modified
    since = _http_date(header)
    return since is not None and entry.mtime <= since


def _if_range_holds(if_range: bytes | None, entry: _Entry) -> bool:
    """If-Range needs a strong match: our exact ETag or exactly our Last-Modified date."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith((b'"', b"W/")):
        return if_range == entry.etag
    return if_range == entry.last_modified or _http_date(if_range) == entry.mtime


def _parse_range(header: bytes, size: int) -> tuple[int, int] | str | None:
    """One `bytes=` range -> (start, length); "unsatisfiable"; None to ignore the header."""
    unit, sep, spec = header.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes" or b"," in spec:
        return None  # another unit, or several ranges: answer with the whole file
    first, dash, last = spec.strip().partition(b"-")
    if not dash or not (first.isdigit() or (not first and last.isdigit())):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        start = max(0, size - suffix)
        return start, size - start
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        return "unsatisfiable"
    end = min(int(last), size - 1) if last else size - 1
    return start, end - start + 1
