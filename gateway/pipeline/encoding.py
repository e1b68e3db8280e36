"""What may be compressed, and how: Accept-Encoding negotiation and the response checks.

One `CompressionPolicy` (COMPRESSION_ENCODINGS, COMPRESSION_MIN_SIZE, COMPRESSION_TYPES)
serves both the compression middleware (gateway/pipeline/compression.py) and the static
files' compressed forms (gateway/pipeline/compressed_files.py), so both give the same
answer to the same request.

Negotiation follows RFC 9110 section 12.5.3: codings with their q-values, `*` for any coding
not listed, q=0 refuses, `x-gzip` is gzip. The highest q wins and the server's order breaks
ties; an explicitly listed `identity` with a higher q than every coding means no compression.
No Accept-Encoding, or one that accepts none of ours, gets the identity body (identity is
sent even when the client refused it, as nginx does, rather than a 406).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from gateway.config import COMPRESSION_CODINGS, DEFAULT_COMPRESSION_TYPES, Config
from gateway.protocol.events import Headers

V = TypeVar("V")

VARY_VALUE = b"Accept-Encoding"

# statuses whose answer has no body to compress, or a body that is a part of one (206)
_NO_BODY = frozenset({204, 205, 206, 304})
_MEMO_LIMIT = 512  # distinct Accept-Encoding / Content-Type values remembered per worker


_tuple_new = tuple.__new__
_READ = frozenset({b"content-type", b"content-encoding", b"content-length", b"cache-control",
                   b"content-range"})


class ResponseFields(NamedTuple):
    """The response header fields compression decides on, read in one pass (a tuple: one
    is made for every response)."""

    content_type: bytes = b""
    content_encoding: bytes = b""
    content_length: int | None = None
    no_transform: bool = False
    content_range: bool = False

    @classmethod
    def read(cls, headers: Headers) -> ResponseFields:
        ctype = encoding = b""
        length: int | None = None
        no_transform = ranged = False
        for name, value in headers:
            if name not in _READ:  # most fields: one set lookup, not five comparisons
                continue
            if name == b"content-type":
                ctype = value
            elif name == b"content-encoding":
                encoding = value.strip()
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"cache-control":
                no_transform = no_transform or b"no-transform" in value.lower()
            elif name == b"content-range":
                ranged = True
        # tuple.__new__ straight: a NamedTuple's own __new__ is a Python function, and
        # calling the class costs twice what the tuple does
        return _tuple_new(cls, (ctype, encoding, length, no_transform, ranged))


@dataclass(slots=True)
class CompressionPolicy:
    encodings: tuple[str, ...] = COMPRESSION_CODINGS  # the server's preference, best first
    min_size: int = 256  # bytes; a body with a smaller content-length stays as it is
    types: tuple[str, ...] = DEFAULT_COMPRESSION_TYPES
    _exact: frozenset[bytes] = field(init=False, repr=False)
    _prefixes: tuple[bytes, ...] = field(init=False, repr=False)
    _suffixes: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False)
    _type_memo: dict[bytes, bool] = field(init=False, repr=False, default_factory=dict)
    _coding_memo: dict[bytes, tuple[str, ...]] = field(init=False, repr=False,
                                                       default_factory=dict)

    def __post_init__(self) -> None:
        exact, prefixes, suffixes = set(), [], []
        for pattern in (t.lower().encode("ascii") for t in self.types):
            major, _, minor = pattern.partition(b"/")
            if minor == b"*":
                prefixes.append(major + b"/")
            elif minor.startswith(b"*+"):
                suffixes.append((major + b"/", minor[1:]))
            else:
                exact.add(pattern)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._suffixes = tuple(suffixes)

    @classmethod
    def from_config(cls, config: Config) -> CompressionPolicy:
        return cls(config.compression_encodings, config.compression_min_size,
                   config.compression_types)

    def compressible_type(self, content_type: bytes) -> bool:
        """Is this Content-Type value (parameters allowed) one of COMPRESSION_TYPES?"""
        known = self._type_memo.get(content_type)
        if known is None:
            media = content_type.partition(b";")[0].strip().lower()
            known = (
                media in self._exact
                or media.startswith(self._prefixes)
                or any(media.startswith(t) and media.endswith(s) for t, s in self._suffixes)
            )
            _remember(self._type_memo, content_type, known)
        return known

    def could_compress(self, status: int, fields: ResponseFields) -> bool:
        """Would this response be compressed for a client that accepts our codings? Such a
        response varies by Accept-Encoding, whatever this client accepts."""
        return (
            status >= 200 and status not in _NO_BODY
            and not fields.content_encoding
            and not fields.no_transform
            and not fields.content_range
            and (fields.content_length is None or fields.content_length >= self.min_size)
            and self.compressible_type(fields.content_type)
        )

    def choose(self, request_headers: Headers) -> str | None:
        """The coding to answer this request with, or None for the identity body."""
        ranked = self.acceptable(request_headers)
        return ranked[0] if ranked else None

    def acceptable(self, request_headers: Headers) -> tuple[str, ...]:
        """Our codings this request accepts, best first; empty for the identity body."""
        value = _accept_encoding(request_headers)
        if value is None:
            return ()
        known = self._coding_memo.get(value)
        if known is None:
            known = rank(value, self.encodings)
            _remember(self._coding_memo, value, known)
        return known


def negotiate(accept_encoding: bytes, preference: Iterable[str]) -> str | None:
    """The best of `preference` for an Accept-Encoding value, None for identity."""
    ranked = rank(accept_encoding, preference)
    return ranked[0] if ranked else None


def rank(accept_encoding: bytes, preference: Iterable[str]) -> tuple[str, ...]:
    """The codings of `preference` an Accept-Encoding value accepts, by q then by
    `preference` (RFC 9110 section 12.5.3)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(b","):
        token, _, params = item.partition(b";")
        name = token.strip().lower().decode("latin-1")
        if not name:
            continue
        q = _weight(params)
        if q is None:
            continue  # a malformed weight: as if the item were absent
        weights["gzip" if name == "x-gzip" else name] = q
    star = weights.get("*", 0.0)
    scored = [(q, i, c) for i, c in enumerate(preference) if (q := weights.get(c, star)) > 0]
    scored.sort(key=lambda s: (-s[0], s[1]))
    if scored and weights.get("identity", -1.0) > scored[0][0]:
        return ()
    return tuple(c for _, _, c in scored)


def _weight(params: bytes) -> float | None:
    for param in params.split(b";"):
        key, eq, value = param.partition(b"=")
        if key.strip().lower() == b"q":
            text = value.strip()
            try:
                q = float(text)
            except ValueError:
                return None
            return q if eq and 0.0 <= q <= 1.0 and len(text) <= 5 else None
    return 1.0


def _accept_encoding(headers: Headers) -> bytes | None:
    found: list[bytes] = []
    for name, value in headers:
        if name == b"accept-encoding":
            found.append(value)
    if not found:
        return None
    return found[0] if len(found) == 1 else b",".join(found)


def _remember(memo: dict[bytes, V], key: bytes, value: V) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()  # a client sending endless distinct values gets no cache, not a leak
    memo[key] = value


def with_vary(headers: Headers) -> Headers:
    """The headers with Accept-Encoding in Vary (added to an existing Vary, never twice)."""
    out: Headers = []
    merged = False
    for name, value in headers:
        if name == b"vary" and not merged:
            listed = [v.strip().lower() for v in value.split(b",")]
            if b"*" not in listed and b"accept-encoding" not in listed:
                value = value + b", " + VARY_VALUE
            merged = True
        out.append((name, value))
    if not merged:
        out.append((b"vary", VARY_VALUE))
    return out


def weak_etag(etag: bytes) -> bytes:
    """A compressed variant is not byte-identical to the original: its ETag is weak."""
    return etag if etag.startswith(b"W/") else b"W/" + etag


# fields that describe the identity body and no longer hold once it is encoded
_IDENTITY_ONLY = frozenset({b"content-length", b"accept-ranges", b"etag"})


def encoded_headers(headers: Headers, coding: str, length: int | None) -> Headers:
    """Headers for the `coding` variant: Content-Encoding, weak ETag, Vary, no Accept-Ranges,
    and Content-Length when the encoded length is known (else the connection frames it)."""
    out: Headers = [(name, value) for name, value in headers if name not in _IDENTITY_ONLY]
    for name, value in headers:
        if name == b"etag":
            out.append((b"etag", weak_etag(value)))
    out.append((b"content-encoding", coding.encode("ascii")))
    if length is not None:
        out.append((b"content-length", b"%d" % length))
    return with_vary(out)
