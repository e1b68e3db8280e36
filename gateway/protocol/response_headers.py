"""Headers every response carries (date, server, configured extras) and outgoing-header checks.

Shared by the HTTP/1.1, HTTP/2 and HTTP/3 adapters. It does no I/O: the server layer calls
`set_date()` once a second so that no response formats a date itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from gateway.protocol.events import Headers

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_KNOWN_NAMES: set[bytes] = set()
_KNOWN_NAMES_MAX = 512

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
STATUS: Final = {code: str(code).encode() for code in range(100, 600)}  # the :status values


def http_date(timestamp: float | None = None) -> bytes:
    """IMF-fixdate as HTTP wants it, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    return formatdate(timestamp, usegmt=True).encode("ascii")


def check_header(name: bytes, value: bytes) -> None:
    """Raise ValueError for a header the peer could misparse (bad name, CR/LF/NUL in value)."""
    if name not in _KNOWN_NAMES:
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"invalid response header name {name!r} (must be a lower-case token)")
        if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
            _KNOWN_NAMES.add(name)
    # CR, LF and NUL would let a header value split the response (CVE-2020-7695 in Uvicorn);
    # three memchr scans by byte value cost less than a regex search (`b"\r" in value`
    # would first try the bytes as an int and format a TypeError)
    if 13 in value or 10 in value or 0 in value:
        raise ValueError(f"invalid byte in value of response header {name!r}")


def response_fields(
    status: int, headers: Headers, defaults: ResponseDefaults, dropped: frozenset[bytes]
) -> tuple[Headers, int]:
    """The HTTP/2 or HTTP/3 field section of a response with the app's headers, and the
    content-length they declare (-1 if none). Raises ValueError for a header the peer could
    misparse; `dropped` are the connection-specific fields the protocol forbids."""
    out: Headers = [(b":status", STATUS[status]), *defaults.h2]
    length = -1
    for name, value in headers:
        if name in dropped:
            continue
        check_header(name, value)
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(f"invalid content-length {value!r}")
            length = int(value)
        elif name == b"te" and value.lower() != b"trailers":
            continue  # the one TE value HTTP/2 allows (RFC 9113 §8.2.2)
        out.append((name, value))
    return out, length


def interim_fields(status: int, headers: Headers, dropped: frozenset[bytes]) -> Headers:
    """The HTTP/2 or HTTP/3 field section of an interim (1xx) response: its own headers only
    (no date or server), checked like a final response's."""
    if not 100 <= status < 200:
        raise ValueError(f"invalid interim status {status}")
    out: Headers = [(b":status", STATUS[status])]
    for name, value in headers:
        if name not in dropped and name != b"content-length":
            check_header(name, value)
            out.append((name, value))
    return out


class ResponseDefaults:
    """The headers the connection layer adds to every response, pre-serialised per protocol.

    `h1` is one bytes block (b"date: ...\\r\\nserver: ...\\r\\n..."), `h2` a list of pairs;
    both are rebuilt only when the date or the extras change.
    """

    __slots__ = ("_date", "_extra", "_server", "h1", "h2")

    def __init__(
        self,
        server: bytes | None = b"php-gateway",
        extra: Iterable[tuple[bytes, bytes]] = (),
        date: bytes | None = None,
    ) -> None:
        self._server = server
        self._extra: Headers = []
        self._date = date if date is not None else http_date()
        self.h1 = b""
        self.h2: Headers = []
        self.set_extra(extra)

    @property
    def date(self) -> bytes:
        return self._date

    def set_date(self, date: bytes) -> None:
        if date != self._date:
            self._date = date
            self._rebuild()

    def set_extra(self, extra: Iterable[tuple[bytes, bytes]]) -> None:
        pairs = [(name.lower(), value) for name, value in extra]
        for name, value in pairs:
            check_header(name, value)
        self._extra = pairs
        self._rebuild()

    def _rebuild(self) -> None:
        pairs: Headers = [(b"date", self._date)]
        if self._server:
            pairs.append((b"server", self._server))
        pairs.extend(self._extra)
        self.h2 = pairs
        self.h1 = b"".join(name + b": " + value + b"\r\n" for name, value in pairs)
