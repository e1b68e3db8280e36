"""Which protocol serves a TCP connection: HTTP/2 when TLS's ALPN chose it, HTTP/1.1
otherwise, and a switch from HTTP/1.1 to HTTP/2 when a cleartext client sends the HTTP/2
preface (prior knowledge) or asks for `Upgrade: h2c` (the adapter replays what it read)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from gateway.protocol.http1 import SwitchToH2
from gateway.server.h1_connection import H1Connection
from gateway.server.h2_connection import H2Connection
from gateway.server.state import ServerState


class _AlpnSelector(asyncio.Protocol):
    """Stands in until the TLS handshake is done, then hands the transport to the protocol
    ALPN picked."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.handshaken = False

    def __del__(self) -> None:
        # a failed or timed-out handshake never calls connection_made: the loop just drops us
        if not self.handshaken:
            self.state.tls_handshake_failures += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handshaken = True
        transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        proto: asyncio.Protocol = (
            H2Connection(self.state, tls=True) if chosen == "h2" else H1Connection(self.state, True)
        )
        transport.set_protocol(proto)
        proto.connection_made(transport)


def connection_factory(state: ServerState, tls: bool) -> Callable[[], asyncio.Protocol]:
    if tls:
        return lambda: _AlpnSelector(state)
    return lambda: H1Connection(state, False)


def switch_to_h2(h1: H1Connection, event: SwitchToH2) -> None:
    """Hand a cleartext HTTP/1.1 connection over to HTTP/2 with the bytes already read."""
    transport = h1.transport
    assert transport is not None
    proto = H2Connection(h1.state, h1.tls)
    h1.state.replaced(h1, proto)
    transport.set_protocol(proto)
    transport.resume_reading()  # the HTTP/1 side may have paused it
    if event.reply:
        transport.write(event.reply)
    upgrade = (event.settings, event.request) if event.request is not None else None
    proto.start(transport, h1.client, h1.server, event.data, upgrade)
