"""TRUSTED_PROXIES: the client behind a reverse proxy, as nginx's realip module finds it.

Only on a connection from a trusted proxy are its forwarding headers believed: RFC 7239
`Forwarded` when present, else `X-Forwarded-For` with `X-Forwarded-Proto`. Each proxy
appends the address it got the request from, so the list is read from the right, skipping
trusted proxies; the first address that is not one is the client (`real_ip_recursive on`;
when all are trusted, the leftmost). Anything to the left of it was written by the client
and is not believed. An entry that is not an address (`unknown`, an obfuscated identifier,
garbage) makes the whole header untrustworthy: the peer stays the client.

Later stages see the result as ctx.client (REMOTE_ADDR, the rate-limit key, the access
log) and ctx.tls (HTTPS, REQUEST_SCHEME); the headers themselves reach PHP unchanged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.config import Config, IPNetwork
from gateway.pipeline.context import App, ContextProxy, Middleware, RequestContext
from gateway.protocol.events import Headers

_PROTOS = {"https": True, "wss": True, "http": False, "ws": False}
_TRUST_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Hop:
    """One forwarding entry: the address a proxy received from, and the scheme if given."""

    client: tuple[str, int] | None  # None: not an IP address (unknown, obfuscated, garbage)
    tls: bool | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    client: tuple[str, int] | None  # None: the peer stays the client
    tls: bool | None  # None: the headers do not say; the connection's own TLS stands


def parse_node(text: str) -> tuple[str, int] | None:
    """'192.0.2.1', '192.0.2.1:80', '2001:db8::1', '[2001:db8::1]:80' -> (address, port);
    the port is 0 when absent (REMOTE_PORT is then empty, as nginx leaves it)."""
    text = text.strip()
    port = "0"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] or "0"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    if not port.isdigit() or int(port) > 65535:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, escaped = [], False
        for ch in value[1:-1]:
            if ch == "\\" and not escaped:
                escaped = True
                continue
            out.append(ch)
            escaped = False
        return "".join(out)
    return value


def forwarded_hops(value: str) -> list[Hop]:
    """RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`."""
    hops = []
    for element in _split_outside_quotes(value, ","):
        client: tuple[str, int] | None = None
        tls: bool | None = None
        for pair in _split_outside_quotes(element, ";"):
            name, sep, raw = pair.partition("=")
            name = name.strip().lower()
            if not sep:
                continue
            if name == "for":
                client = parse_node(_unquote(raw))
            elif name == "proto":
                tls = _PROTOS.get(_unquote(raw).lower())
        hops.append(Hop(client, tls))
    return hops


def x_forwarded_hops(forwarded_for: str, proto: str) -> list[Hop]:
    """X-Forwarded-For entries; X-Forwarded-Proto's value goes with them when it has one
    value (set once by the edge proxy) or one per entry (appended by each proxy)."""
    nodes = [parse_node(item) for item in forwarded_for.split(",")]
    protos = x_forwarded_protos(proto)
    if len(protos) == 1:
        protos *= len(nodes)
    elif len(protos) != len(nodes):
        protos = [None] * len(nodes)
    return [Hop(node, tls) for node, tls in zip(nodes, protos, strict=True)]


def x_forwarded_protos(proto: str) -> list[bool | None]:
    return [_PROTOS.get(item.strip().lower()) for item in proto.split(",")] if proto else []


class ProxyTrust:
    def __init__(self, networks: tuple[IPNetwork, ...]) -> None:
        self.networks = networks
        self._cache: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is not None:
            return known
        node = parse_node(address)
        ip = ipaddress.ip_address(node[0]) if node else None
        trusted = ip is not None and any(ip in net for net in self.networks)
        if len(self._cache) >= _TRUST_CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = trusted
        return trusted

    def resolve(self, peer: str, headers: Headers) -> Resolved | None:
        """What a trusted peer's headers say of the client; None = they change nothing."""
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        xfp: list[bytes] = []
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                xfp.append(value)
        if not (forwarded or xff or xfp) or not self.trusts(peer):
            return None
        if forwarded:
            hops = forwarded_hops(b",".join(forwarded).decode("latin-1"))
        elif xff:
            hops = x_forwarded_hops(b",".join(xff).decode("latin-1"),
                                    b",".join(xfp).decode("latin-1"))
        else:  # X-Forwarded-Proto alone: the scheme changes, the peer stays the client
            protos = x_forwarded_protos(b",".join(xfp).decode("latin-1"))
            return Resolved(None, protos[0]) if len(protos) == 1 else None
        for index in range(len(hops) - 1, -1, -1):
            hop = hops[index]
            if hop.client is None:
                return None
            if index > 0 and self.trusts(hop.client[0]):
                continue
            return Resolved(hop.client, hop.tls)
        return None


def trusted_proxies(config: Config) -> Middleware:
    trust = ProxyTrust(config.trusted_proxies)

    def wrap(app: App) -> App:
        async def resolved(ctx: RequestContext) -> None:
            found = trust.resolve(ctx.client[0], ctx.request.headers)
            if found is None:
                await app(ctx)
                return
            behind = ContextProxy(ctx)
            if found.client is not None:
                behind.client = found.client
            if found.tls is not None:
                behind.tls = found.tls
            await app(behind)

        return resolved

    return wrap
