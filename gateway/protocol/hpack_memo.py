"""An HPACK decoder and encoder for h2 that remember the header blocks they have coded.

Clients repeat themselves: after its first request, a browser or a load generator sends
each new request's header section as nearly the same bytes, indexed references plus a few
literals that are never indexed (short cookie crumbs, per RFC 7541 §7.1.3). hpack decodes
those literals, Huffman coding included, in Python on every request: about a third of
the HTTP/2 layer's cost per request here.

Decoding is a function of the block's bytes and of the dynamic table, and a block made
only of such representations leaves the table as it found it. So a block is remembered
together with the table's version (bumped by every insertion and every resize), and the
same bytes met again at the same version give the same fields without decoding. Blocks
that insert or resize are decoded every time. The memo belongs to one connection.

Responses repeat too: the same header list (status, type, length, date within its second)
encodes, once its fields are in the table, to the same indexed references, again without
changing the table; `MemoEncoder` keeps such blocks the same way, keyed by the list.
"""

from __future__ import annotations

from typing import Any, Final

from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable

MEMO_ENTRIES: Final = 16  # distinct request sections remembered per connection
MEMO_MAX_BLOCK: Final = 4096  # bytes: larger blocks are decoded every time


def _remember(memo: dict[Any, Any], key: Any, entry: Any) -> None:
    """Store in a memo of at most MEMO_ENTRIES, dropping the oldest entry when full."""
    if key not in memo and len(memo) >= MEMO_ENTRIES:
        del memo[next(iter(memo))]
    memo[key] = entry


class _VersionedTable(HeaderTable):
    """hpack's dynamic table, counting the changes that can alter a decoding."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.version += 1
        vars(HeaderTable)["maxsize"].__set__(self, value)  # hpack's setter: evicts as needed


class MemoDecoder(Decoder):
    """hpack's Decoder with a per-connection memo of table-neutral header blocks."""

    def __init__(self, like: Decoder | None = None) -> None:
        super().__init__()
        self.header_table = _VersionedTable()
        if like is not None:  # the limits h2 already set on the decoder this one replaces
            self.max_header_list_size = like.max_header_list_size
            self.max_allowed_table_size = like.max_allowed_table_size
            self.header_table.maxsize = like.header_table.maxsize
        self._memo: dict[bytes, tuple[int, int, list[Any]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        table = self.header_table
        assert isinstance(table, _VersionedTable)
        key = bytes(data)
        hit = self._memo.get(key)
        if (
            raw
            and hit is not None
            and hit[0] == table.version
            and hit[1] <= self.max_header_list_size
            and table.maxsize <= self.max_allowed_table_size
        ):
            return list(hit[2])
        version = table.version
        headers = super().decode(data, raw)
        if raw and table.version == version and len(key) <= MEMO_MAX_BLOCK:
            size = sum(32 + len(name) + len(value) for name, value in headers)
            _remember(self._memo, key, (version, size, list(headers)))
        return headers


# response fields whose value is new in every response (request and trace ids, timings)
VOLATILE = frozenset((b"traceparent", b"tracestate", b"x-request-id", b"server-timing"))


class MemoEncoder(Encoder):
    """hpack's Encoder with a per-connection memo of table-neutral header lists."""

    def __init__(self, like: Encoder | None = None) -> None:
        super().__init__()
        self.header_table = _VersionedTable()
        if like is not None:  # a size h2 set already, still to be announced
            self.header_table.maxsize = like.header_table.maxsize
            self.header_table.resized = like.header_table.resized
        self._memo: dict[tuple[tuple[Any, ...], bool], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        assert isinstance(table, _VersionedTable)
        if table.resized or isinstance(headers, dict):
            return super().encode(headers, huffman)  # a size update leads this block
        fields = tuple(headers)
        # plain (name, value) pairs only: a HeaderTuple or a third item may ask never-indexed
        if any(type(field) is not tuple or len(field) != 2 for field in fields):
            return super().encode(fields, huffman)
        tail = b""
        if any(field[0] in VOLATILE for field in fields):
            # fields new in every response would make every block new: they go last, never
            # indexed (table-neutral), and the rest of the block stays a memo hit
            tail = super().encode([(n, v, True) for n, v in fields if n in VOLATILE], huffman)
            fields = tuple(field for field in fields if field[0] not in VOLATILE)
        key = (fields, huffman)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == table.version:
            return hit[1] + tail if tail else hit[1]
        version = table.version
        encoded = super().encode(fields, huffman)
        if table.version == version:
            _remember(self._memo, key, (version, encoded))
        return encoded + tail if tail else encoded


__all__ = ["HeaderTuple", "MemoDecoder", "MemoEncoder"]
