"""What the kernel does with SO_REUSEPORT sockets, which the supervisor's restart and the
drain of HTTP/3 rely on (issue 9, points 4 and 5), and the supervisor's socket bookkeeping
(one TCP socket all workers share), on real loopback sockets:

- the TCP socket is one, without SO_REUSEPORT; when no worker is alive the supervisor
  closes it, and the fresh one it binds refuses clients until a worker listens on it;
- a UDP socket connected to one client gets that client's datagrams ahead of the group, so
  a draining worker closes its listening UDP socket and keeps its QUIC connections.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.supervisor import RESTART_BACKOFF_MAX, backoff, bind_listeners


def reuseport_udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def test_connected_udp_socket_keeps_its_client_after_the_listener_closes() -> None:
    listener = reuseport_udp()
    port = listener.getsockname()[1]
    other_worker = reuseport_udp(port)
    old_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    old_client.connect(("127.0.0.1", port))
    old_client.settimeout(1)
    handed = reuseport_udp(port)  # what QuicServer._hand_over makes
    handed.connect(old_client.getsockname())
    handed.settimeout(1)
    listener.close()
    other_worker.close()  # every worker drains: the port has no listening socket left
    old_client.send(b"in flight")
    assert handed.recv(100) == b"in flight"
    handed.send(b"answer")
    assert old_client.recv(100) == b"answer"
    new_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    new_client.connect(("127.0.0.1", port))
    new_client.settimeout(1)
    new_client.send(b"x" * 1200)
    with pytest.raises(ConnectionRefusedError):
        new_client.recv(100)  # ICMP port unreachable: refused, the client goes elsewhere
    for s in (old_client, handed, new_client):
        s.close()


def test_supervisor_shares_one_tcp_socket_and_rebinds_it_without_listening(
        tmp_path: Path) -> None:
    config = load_config(["--listen-addr", "127.0.0.1:0", "--processes", "2",
                          "--document-root", str(tmp_path)], {})
    listeners = bind_listeners(config)
    shared = listeners.http[0]
    port = shared.getsockname()[1]
    try:
        assert listeners.roles(0)["http"] is listeners.roles(1)["http"] is shared
        assert shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        listeners.release()  # no worker alive holds it: the port refuses now
        assert shared.fileno() == -1
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        listeners.rebind()
        fresh = listeners.http[0]
        assert fresh.getsockname()[1] == port
        assert fresh.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        with socket.socket() as probe:  # bound, not listening: still refused
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        listeners.rebind()  # open sockets are kept as they are
        assert listeners.http[0] is fresh
    finally:
        listeners.close_held()
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", port))  # close_held let the TCP port go too


def test_supervisor_close_held_frees_the_udp_port(tmp_path: Path) -> None:
    config = load_config(["--listen-addr", "127.0.0.1:0", "--processes", "2",
                          "--document-root", str(tmp_path)], {})
    listeners = bind_listeners(config)
    udp = [reuseport_udp()]
    listeners.quic = udp
    port = udp[0].getsockname()[1]
    listeners.close_held()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.bind(("127.0.0.1", port))  # nothing holds it any more
    for s in listeners.http:
        s.close()


def test_backoff_only_after_deaths_before_ready() -> None:
    assert backoff(0) == 0.0  # died after serving: at once
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, RESTART_BACKOFF_MAX,
                                                 RESTART_BACKOFF_MAX]

