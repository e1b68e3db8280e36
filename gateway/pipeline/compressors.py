"""The three content codings as streaming encoders and one-shot functions.

Two strengths: FAST for dynamic output, compressed as it leaves PHP (Caddy's and nginx's
usual levels: a 30 KB page in well under a millisecond), and BEST for static files, whose
compressed form is made once and cached. zlib, brotli and zstandard all release the GIL
while they work, so compressing in a thread executor leaves the event loop free.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

# gzip 2: as fast as nginx's default level 1 on HTML (62 against 63 us for 30 KB) and 4 %
# smaller; level 4, the first lazy-matching one, took 114 us for 11 % less
FAST = {"zstd": 3, "br": 5, "gzip": 2}
BEST = {"zstd": 19, "br": 11, "gzip": 9}
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class StreamEncoder(Protocol):
    def compress(self, data: bytes, flush: bool = True) -> bytes:
        """Compresses `data`; with flush, everything given so far can be decoded from the
        output so far, so a streamed chunk (an SSE event) reaches the client whole. Without,
        the encoder may keep it for a better ratio and fewer, larger frames."""
        ...

    def finish(self) -> bytes:
        """The end of the stream (the trailer)."""
        ...


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def compress(self, data: bytes, flush: bool = True) -> bytes:
        out = self._z.compress(data)
        return out + self._z.flush(zlib.Z_SYNC_FLUSH) if flush else out

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


class _Brotli:
    __slots__ = ("_b",)

    def __init__(self, quality: int) -> None:
        self._b = brotli.Compressor(quality=quality)

    def compress(self, data: bytes, flush: bool = True) -> bytes:
        out = bytes(self._b.process(data))
        return out + bytes(self._b.flush()) if flush else out

    def finish(self) -> bytes:
        return bytes(self._b.finish())


class _Zstd:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes, flush: bool = True) -> bytes:
        out: bytes = self._z.compress(data)
        return out + self._z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) if flush else out

    def finish(self) -> bytes:
        out: bytes = self._z.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        return out


def stream_encoder(coding: str, level: int | None = None) -> StreamEncoder:
    """A streaming encoder for `coding` at `level` (FAST's when None)."""
    lvl = FAST[coding] if level is None else level
    if coding == "zstd":
        return _Zstd(lvl)
    if coding == "br":
        return _Brotli(lvl)
    if coding == "gzip":
        return _Gzip(lvl)
    raise ValueError(f"unknown content coding {coding!r}")


def compress_whole(coding: str, data: bytes, level: int | None = None) -> bytes:
    """`data` as one complete stream of `coding` (FAST's level when None)."""
    lvl = FAST[coding] if level is None else level
    if coding == "zstd":
        # one-shot frames carry the content size, so decoders size their window to it
        out: bytes = zstandard.ZstdCompressor(level=lvl).compress(data)
        return out
    if coding == "br":
        return bytes(brotli.compress(data, quality=lvl))
    if coding == "gzip":
        z = zlib.compressobj(lvl, zlib.DEFLATED, _GZIP_WBITS)
        return z.compress(data) + z.flush(zlib.Z_FINISH)
    raise ValueError(f"unknown content coding {coding!r}")


def decompress(coding: str, data: bytes) -> bytes:
    """The inverse, for checks (tests, the benchmark's smoke check)."""
    if coding == "zstd":
        out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return out
    if coding == "br":
        return bytes(brotli.decompress(data))
    if coding == "gzip":
        return zlib.decompress(data, _GZIP_WBITS)
    raise ValueError(f"unknown content coding {coding!r}")
