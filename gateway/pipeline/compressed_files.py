"""Compressed forms of static files: precompressed siblings and a bounded cache.

For a 200 answer of a compressible file (COMPRESSION_TYPES, at least COMPRESSION_MIN_SIZE)
to a client that accepts one of our codings, `CompressedFiles.encode` gives the response
for that coding, as nginx's `gzip_static` / `brotli_static` and Caddy's `precompressed` do:

1. a form in memory (keyed by file, size, mtime and coding) in the client's first coding;
2. else a sibling `<file>.zst`, `.br` or `.gz` in a coding the client accepts, the first
   in its order, whose mtime is not older than the file's: read into the cache when small
   enough to hold in memory, else streamed from disk like any large file. The operator's
   files win over a form of our own in a coding the client prefers;
3. else, for a file held in memory, the best-quality form (compressors.BEST) in the
   client's first coding is made in the background, once, on a thread of its own (one at a
   time, at most MAX_MAKING waiting), and cached; until it is ready, and for large files
   without a sibling, the response goes on unencoded and the compression middleware
   encodes it on the fly at the fast level.

The cache holds at most `memory_bytes` of compressed bodies (least recently used first out).
Every such response, and its 304s, carry `Vary: Accept-Encoding`; encoded ones and the 304s
a client of an encoded one gets carry the weak ETag (encoding.py's rules, shared with the
middleware). A sibling is looked for when a file version's form is first needed, so a
sibling added later without touching the file is seen once the cached form is evicted.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from gateway.config import Config
from gateway.pipeline.compressors import BEST, compress_whole
from gateway.pipeline.encoding import CompressionPolicy, encoded_headers, weak_etag, with_vary
from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import FileRegion, StaticResponse, open_regular
from gateway.protocol.events import Request

SIBLING_SUFFIX = {"zstd": ".zst", "br": ".br", "gzip": ".gz"}
MEMORY_BYTES = 32 * 1024 * 1024
MAX_ENTRIES = 8192
MAX_MAKING = 64  # forms waiting to be made; past it a file waits for a later request

_Key = tuple[str, int, int, str]  # path, mtime_ns, size, coding


class CompressedFiles:
    def __init__(self, policy: CompressionPolicy, *, memory_bytes: int = MEMORY_BYTES,
                 max_in_memory: int = 256 * 1024, executor: Executor | None = None) -> None:
        self.policy = policy
        self._memory_limit = memory_bytes
        self._max_in_memory = max_in_memory  # a sibling up to this size is read into the cache
        self._executor = executor
        # form, and whether it is the operator's sibling file
        self._cache: OrderedDict[_Key, tuple[bytes, bool]] = OrderedDict()
        self._cached_bytes = 0
        self._making: dict[_Key, asyncio.Future[bytes]] = {}  # background compressions
        # one thread of its own: a deploy's first wave of brotli-11 work neither takes every
        # core nor queues the file reads of the shared executor behind it
        self._maker: ThreadPoolExecutor | None = None

    async def encode(self, request: Request, route: StaticFile, content_type: bytes,
                     body: bytes | None, response: StaticResponse) -> StaticResponse | None:
        """The encoded response replacing `response`, or None to send `response`, to which
        Vary (and on a 304 the weak ETag) has been added where they belong."""
        if response.status not in (200, 304) or route.size < self.policy.min_size:
            return None
        if not self.policy.compressible_type(content_type):
            return None
        accepted = () if request.method == b"HEAD" else self.policy.acceptable(request.headers)
        if response.status == 304:
            response.headers = _validators_for(response.headers, bool(accepted))
            return None
        response.headers = with_vary(response.headers)
        if not accepted or not response.send_body:
            return None
        found = self._lookup(route, accepted)
        if found is not None:
            coding, encoded = found
            return _encoded_response(response, coding, encoded)
        sibling = await asyncio.get_running_loop().run_in_executor(
            self._executor, _read_sibling, route, accepted, self._max_in_memory)
        if sibling is not None:
            coding, form = sibling
            if isinstance(form, bytes):
                self._remember(_key(route, coding), form, from_sibling=True)
                return _encoded_response(response, coding, form)
            fd, length = form
            variant = _encoded_response(response, coding, b"", length)
            variant.region = FileRegion(fd, 0, length)
            return variant
        key = _key(route, accepted[0])
        if body is not None and key not in self._making and len(self._making) < MAX_MAKING:
            self._make(key, accepted[0], body)
        return None

    def concerns(self, content_type: bytes, size: int) -> bool:
        """Whether `encode` can change a 200 or 304 of such a file (its type compressible, its
        size at least COMPRESSION_MIN_SIZE); the static stage skips it for the others."""
        return size >= self.policy.min_size and self.policy.compressible_type(content_type)

    def cached(self, route: StaticFile, coding: str) -> bytes | None:
        """The cached form of this file version in `coding`, if there is one."""
        entry = self._cache.get(_key(route, coding))
        return None if entry is None else entry[0]

    async def settled(self) -> None:
        """Waits for the background compressions under way (tests, shutdown)."""
        while self._making:
            await asyncio.gather(*self._making.values(), return_exceptions=True)

    # ------------------------------------------------------------ internals

    def _make(self, key: _Key, coding: str, body: bytes) -> None:
        if self._maker is None:
            self._maker = ThreadPoolExecutor(1, thread_name_prefix="compress-static")
        future = asyncio.get_running_loop().run_in_executor(
            self._maker, compress_whole, coding, body, BEST[coding])
        self._making[key] = future

        def done(f: asyncio.Future[bytes]) -> None:
            del self._making[key]
            if not f.cancelled() and f.exception() is None:
                encoded = f.result()
                if len(encoded) < len(body):  # else the identity body is the better answer
                    self._remember(key, encoded)

        future.add_done_callback(done)

    def _lookup(self, route: StaticFile, accepted: tuple[str, ...]) -> tuple[str, bytes] | None:
        """The best cached form: the client's first coding, else a sibling it accepts (the
        operator's files win over making a form of our own)."""
        for rank, coding in enumerate(accepted):
            key = _key(route, coding)
            entry = self._cache.get(key)
            if entry is not None and (rank == 0 or entry[1]):
                self._cache.move_to_end(key)
                return coding, entry[0]
        return None

    def _remember(self, key: _Key, encoded: bytes, *, from_sibling: bool = False) -> None:
        if len(encoded) > self._memory_limit:
            return
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= len(old[0])
        self._cache[key] = (encoded, from_sibling)
        self._cached_bytes += len(encoded)
        while self._cached_bytes > self._memory_limit or len(self._cache) > MAX_ENTRIES:
            _, (evicted, _) = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted)


def _key(route: StaticFile, coding: str) -> _Key:
    return str(route.path), route.mtime_ns, route.size, coding


def _encoded_response(response: StaticResponse, coding: str, body: bytes,
                      length: int | None = None) -> StaticResponse:
    size = len(body) if length is None else length
    return StaticResponse(200, encoded_headers(response.headers, coding, size),
                          response.content_type, body, etag=weak_etag(response.etag))


def _validators_for(headers: list[tuple[bytes, bytes]], encoded: bool
                    ) -> list[tuple[bytes, bytes]]:
    """A 304's fields: Vary, and the ETag of the variant this client would get."""
    if encoded:
        headers = [(n, weak_etag(v) if n == b"etag" else v) for n, v in headers]
    return with_vary(headers)


def _read_sibling(route: StaticFile, accepted: tuple[str, ...], max_in_memory: int
                  ) -> tuple[str, bytes | tuple[int, int]] | None:
    """Runs in a thread: the first fresh sibling in the client's order, as (coding, its bytes)
    or (coding, (open fd, size)) when too large to hold; None when there is none."""
    for coding in accepted:
        opened = open_regular(Path(str(route.path) + SIBLING_SUFFIX[coding]))
        if isinstance(opened, int):
            continue
        fd, st = opened
        if st.st_mtime_ns < route.mtime_ns or st.st_size == 0:
            os.close(fd)
            continue  # older than the file it stands for: a stale build output
        if st.st_size > max_in_memory:
            return coding, (fd, st.st_size)
        try:
            data = os.pread(fd, st.st_size, 0)
        except OSError:
            continue
        finally:
            os.close(fd)
        if len(data) == st.st_size:
            return coding, data
    return None


def compressed_files(config: Config) -> CompressedFiles | None:
    """The static files' compressed forms, when COMPRESSION is on."""
    return CompressedFiles(CompressionPolicy.from_config(config)) if config.compression else None
