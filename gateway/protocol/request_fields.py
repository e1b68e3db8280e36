"""An HTTP/2 or HTTP/3 request field section, split the way both adapters need it.

Both protocols carry the request line as pseudo-header fields (":method", ":path", ...) and
may send Cookie in crumbs; the pipeline wants HTTP/1-style headers. What makes an HTTP/3
request unacceptable is decided in http3.py, after aioquic's checks; HTTP/2 sections are
checked by `malformed_h2_request` below, in place of h2's own inbound validation.

`valid_host` is the one check of a Host field or :authority for all three protocols.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from gateway.protocol.events import Headers

# RFC 3986 §3.2.2 reg-name (an IPv4 address is one too), split into dot-separated labels so
# that an empty one (".." or a leading dot) is refused, as nginx refuses it
_LABEL: Final = rb"(?:[A-Za-z0-9\-_~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+"
_HOST: Final = re.compile(
    rb"(?:" + _LABEL + rb"(?:\." + _LABEL + rb")*\.?"  # reg-name, an optional final dot
    rb"|\[(?:[0-9A-Fa-f:.]+"  # IPv6address, checked by ipaddress below
    rb"|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\])"  # IPvFuture
    rb"(?::([0-9]{0,5}))?"  # port, possibly empty (RFC 3986 §3.2.3)
)


@functools.lru_cache(maxsize=1024)  # every request asks, about the same few hosts
def valid_host(value: bytes, *, port: bool = True) -> bool:
    """Whether `value` is uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2): no spaces,
    userinfo, path or other junk, not empty. `port=False`: the host alone."""
    match = _HOST.fullmatch(value)
    if match is None or (not port and match[1] is not None):
        return False
    if match[1] and int(match[1]) > 65535:
        return False
    if value[:1] == b"[" and value[1:2] != b"v":
        try:
            ipaddress.IPv6Address(value[1 : value.index(b"]")].decode("ascii"))
        except ValueError:
            return False
    return True


class RequestFields(NamedTuple):
    pseudo: dict[bytes, bytes]  # b":method" -> value, the last one if repeated
    headers: Headers  # the other fields in arrival order, cookie crumbs joined in one field
    # the last content-length that is all digits, else the first one
    content_length: bytes | None
    host: bytes | None  # the first host field
    repeated: bool  # content-length or host came more than once
    size: int  # RFC 9114 §4.2.2 (RFC 9113 §6.5.2): names + values + 32 per field


_tuple_new = tuple.__new__


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
    # tuple.__new__ straight: calling a NamedTuple class runs its Python __new__ too
    return _tuple_new(RequestFields, (pseudo, headers, length, host, repeated, size))


# RFC 9113 §8.2.1: no 0x00-0x20, A-Z, 0x7f-0xff, and no colon after the first byte
_FIELD_NAME: Final = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+")
# no NUL, CR or LF anywhere, no SP or HTAB at either end
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_REQUEST_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path"))
_CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)


def malformed_h2_request(fields: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why an HTTP/2 request header section is malformed (RFC 9113 §8.1.1, §8.2, §8.3), or
    None. One pass with C-speed regexes: h2's own check walks every byte in Python and cost
    about 13 µs a request. Extended CONNECT (:protocol) is not offered, so it is refused."""
    seen: set[bytes] = set()
    regular = False
    host = authority = method = None
    for name, value in fields:
        if name[:1] == b":":
            if regular or name in seen or name not in _REQUEST_PSEUDO:
                return f"pseudo-header field {name!r} repeated, unknown or after a field"
            seen.add(name)
            if name == b":path" and not value:
                return "empty :path"
            if name == b":authority":
                authority = value
            elif name == b":method":
                method = value
        else:
            regular = True
            if _FIELD_NAME.fullmatch(name) is None:
                return f"invalid field name {name!r}"
            if name in _CONNECTION_SPECIFIC:
                return f"connection-specific field {name!r}"
            if name == b"te" and value.lower() != b"trailers":
                return "te other than trailers"
            if name == b"host":
                host = value
        if value and _BAD_VALUE.search(value) is not None:
            return f"invalid value of {name!r}"
    if method is None:
        return "no :method"
    if method == b"CONNECT":
        return None  # answered 501: no tunnels here
    if b":scheme" not in seen or b":path" not in seen:
        return "no :scheme or :path"
    if authority is None and host is None:
        return "neither :authority nor host"
    if authority is not None and host is not None and authority != host:
        return ":authority and host differ"
    return None
