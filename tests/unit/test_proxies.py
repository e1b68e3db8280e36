"""TRUSTED_PROXIES: which forwarding headers are believed, and what they resolve to."""

from __future__ import annotations

import ipaddress

import pytest
from recording_context import RecordingContext, request

from gateway.config import load_config
from gateway.pipeline.context import RequestContext
from gateway.pipeline.proxies import ProxyTrust, Resolved, forwarded_hops, parse_node
from gateway.pipeline.proxies import trusted_proxies as proxies_middleware
from gateway.protocol.events import Headers

NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "2001:db8:ffff::/48"))
PROXY = "10.0.0.2"


def resolve(peer: str, *headers: tuple[bytes, bytes]) -> Resolved | None:
    return ProxyTrust(NETS).resolve(peer, list(headers))


@pytest.mark.parametrize(("text", "node"), [
    ("192.0.2.1", ("192.0.2.1", 0)),
    (" 192.0.2.1:8080 ", ("192.0.2.1", 8080)),
    ("2001:db8::1", ("2001:db8::1", 0)),
    ("[2001:DB8::1]:4711", ("2001:db8::1", 4711)),
    ("[2001:db8::1]", ("2001:db8::1", 0)),
    ("::ffff:192.0.2.7", ("192.0.2.7", 0)),
    ("unknown", None),
    ("_hidden", None),
    ("192.0.2.1:99999", None),
    ("[2001:db8::1]x", None),
    ("example.com", None),
    ("", None),
])
def test_parse_node(text: str, node: tuple[str, int] | None) -> None:
    assert parse_node(text) == node


def test_untrusted_peer_changes_nothing() -> None:
    for header in (b"x-forwarded-for", b"forwarded", b"x-forwarded-proto"):
        assert resolve("198.51.100.1", (header, b"for=1.2.3.4;proto=https")) is None
        assert resolve("198.51.100.1", (header, b"1.2.3.4")) is None


def test_no_forwarding_headers_change_nothing() -> None:
    assert resolve(PROXY, (b"host", b"example.com")) is None


def test_x_forwarded_for_rightmost_untrusted() -> None:
    # the client spoofs 6.6.6.6; the trusted proxy appended the address it saw
    found = resolve(PROXY, (b"x-forwarded-for", b"6.6.6.6, 203.0.113.5"))
    assert found == Resolved(("203.0.113.5", 0), None)


def test_chain_of_trusted_proxies_is_walked() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"6.6.6.6, 203.0.113.5, 10.1.1.1, 10.2.2.2"))
    assert found is not None and found.client == ("203.0.113.5", 0)


def test_all_trusted_gives_the_leftmost() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"10.9.9.9, 10.1.1.1"))
    assert found is not None and found.client == ("10.9.9.9", 0)


def test_several_header_lines_join_in_order() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"6.6.6.6"),
                    (b"x-forwarded-for", b"203.0.113.5, 10.1.1.1"))
    assert found is not None and found.client == ("203.0.113.5", 0)


def test_garbage_on_the_walk_makes_the_header_ignored() -> None:
    assert resolve(PROXY, (b"x-forwarded-for", b"203.0.113.5, not-an-ip")) is None
    # garbage beyond the client (written by the client itself) does not matter
    found = resolve(PROXY, (b"x-forwarded-for", b"junk, 203.0.113.5"))
    assert found is not None and found.client == ("203.0.113.5", 0)


def test_port_in_x_forwarded_for_is_kept() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"203.0.113.5:5555"))
    assert found is not None and found.client == ("203.0.113.5", 5555)


def test_x_forwarded_proto() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https"))
    assert found == Resolved(("203.0.113.5", 0), True)
    found = resolve(PROXY, (b"x-forwarded-proto", b"HTTPS"))
    assert found == Resolved(None, True)  # the scheme alone: the peer stays the client
    found = resolve(PROXY, (b"x-forwarded-proto", b"http"))
    assert found == Resolved(None, False)
    # one value per hop: the one that goes with the chosen address
    found = resolve(PROXY, (b"x-forwarded-for", b"203.0.113.5, 10.1.1.1"),
                    (b"x-forwarded-proto", b"https, http"))
    assert found == Resolved(("203.0.113.5", 0), True)
    # counts that do not match cannot be attributed: the scheme stays unknown
    found = resolve(PROXY, (b"x-forwarded-for", b"1.1.1.1, 203.0.113.5, 10.1.1.1"),
                    (b"x-forwarded-proto", b"https, http"))
    assert found == Resolved(("203.0.113.5", 0), None)


def test_forwarded_rfc7239() -> None:
    found = resolve(PROXY, (b"forwarded",
                            b'for=6.6.6.6;proto=http, For="[2001:db8:cafe::17]:4711";'
                            b"proto=https;by=10.0.0.2"))
    assert found == Resolved(("2001:db8:cafe::17", 4711), True)


def test_forwarded_wins_over_x_forwarded_for() -> None:
    found = resolve(PROXY, (b"x-forwarded-for", b"198.51.100.77"),
                    (b"forwarded", b"for=203.0.113.5"))
    assert found is not None and found.client == ("203.0.113.5", 0)


def test_forwarded_chain_and_spoofing() -> None:
    found = resolve(PROXY, (b"forwarded", b"for=6.6.6.6, for=203.0.113.5;proto=https, "
                                          b'for="[2001:db8:ffff::1]";proto=http'))
    assert found == Resolved(("203.0.113.5", 0), True)
    assert resolve(PROXY, (b"forwarded", b"for=unknown")) is None
    assert resolve(PROXY, (b"forwarded", b"proto=https")) is None  # a hop without for=


def test_forwarded_quoted_commas_and_semicolons() -> None:
    hops = forwarded_hops('for="[2001:db8::1]:80";x="a,b;c", for=192.0.2.1')
    assert [h.client for h in hops] == [("2001:db8::1", 80), ("192.0.2.1", 0)]


def test_trusted_ipv6_peer_and_mapped_peer() -> None:
    found = resolve("2001:db8:ffff::9", (b"x-forwarded-for", b"203.0.113.5"))
    assert found is not None and found.client == ("203.0.113.5", 0)
    found = resolve("::ffff:10.0.0.2", (b"x-forwarded-for", b"203.0.113.5"))
    assert found is not None and found.client == ("203.0.113.5", 0)


async def test_middleware_gives_later_stages_the_client() -> None:
    seen: list[tuple[tuple[str, int], bool]] = []

    async def endpoint(ctx: RequestContext) -> None:
        seen.append((ctx.client, ctx.tls))
    config = load_config(["--document-root", ".", "--trusted-proxies", "10.0.0.0/8"], {})
    app = proxies_middleware(config)(endpoint)
    headers: Headers = [(b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https")]
    await app(RecordingContext(request(headers=headers), client=(PROXY, 50000)))
    await app(RecordingContext(request(headers=headers), client=("198.51.100.1", 50001)))
    assert seen == [(("203.0.113.5", 0), True), (("198.51.100.1", 50001), False)]
