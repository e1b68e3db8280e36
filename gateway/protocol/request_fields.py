"""An HTTP/2 or HTTP/3 request field section, split the way both adapters need it.

Both protocols carry the request line as pseudo-header fields (":method", ":path", ...) and
may send Cookie in crumbs; the pipeline wants HTTP/1-style headers. What makes a request
unacceptable is not decided here: the h2 library has validated the section before
http2.py sees it, while http3.py checks what aioquic lets through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gateway.protocol.events import Headers


class RequestFields(NamedTuple):
    pseudo: dict[bytes, bytes]  # b":method" -> value, the last one if repeated
    headers: Headers  # the other fields in arrival order, cookie crumbs joined in one field
    # the last content-length that is all digits, else the first one
    content_length: bytes | None
    host: bytes | None  # the first host field
    repeated: bool  # content-length or host came more than once
    size: int  # RFC 9114 §4.2.2 (RFC 9113 §6.5.2): names + values + 32 per field


def split_request_fields(fields: Iterable[tuple[bytes, bytes]]) -> RequestFields:
    pseudo: dict[bytes, bytes] = {}
    headers: Headers = []
    cookies: list[bytes] = []
    length = host = None
    repeated = False
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            pseudo[name] = value
            continue
        if name == b"cookie":
            # RFC 9113 §8.2.3, RFC 9114 §4.2.1: crumbs are rejoined for an HTTP/1-style consumer
            if not cookies:
                headers.append((name, b""))
            cookies.append(value)
            continue
        if name == b"content-length":
            if length is not None:
                repeated = True
            if length is None or value.isdigit():
                length = value
        elif name == b"host":
            if host is not None:
                repeated = True
            else:
                host = value
        headers.append((name, value))
    if cookies:
        headers[headers.index((b"cookie", b""))] = (b"cookie", b"; ".join(cookies))
    return RequestFields(pseudo, headers, length, host, repeated, size)
