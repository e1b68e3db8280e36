"""What the kernel does with SO_REUSEPORT sockets, which the supervisor's restart and the
drain rely on (issue 9, points 4 and 5), and the supervisor's socket bookkeeping, on real
loopback sockets:

- a closed TCP listener's queued connections are reset (or, with
  net.ipv4.tcp_migrate_req=1, handed to a live listener of the group): none waits;
- new connections only go to listening sockets, so a replacement worker's socket, bound
  but not yet listening, takes none before the worker is ready;
- a UDP socket connected to one client gets that client's datagrams ahead of the group, so
  a draining worker closes its listening UDP socket and keeps its QUIC connections.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.supervisor import RESTART_BACKOFF_MAX, backoff, bind_listeners


def reuseport_tcp(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def reuseport_udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def accept_all(listener: socket.socket) -> list[socket.socket]:
    listener.setblocking(False)
    out = []
    while True:
        try:
            out.append(listener.accept()[0])
        except BlockingIOError:
            return out


def test_closed_listener_leaves_no_connection_waiting() -> None:
    a = reuseport_tcp()
    port = a.getsockname()[1]
    b = reuseport_tcp(port)
    a.listen(64)
    b.listen(64)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(40)]
    time.sleep(0.05)
    a.close()  # as a worker's death closes its socket when no copy is held elsewhere
    accepted = accept_all(b)
    for conn in accepted:
        conn.sendall(b"b")  # so that a client b took hears from it
    fates = {"served": 0, "reset": 0}
    for c in clients:
        c.settimeout(2)  # a client left waiting would time out here and fail the test
        try:
            data = c.recv(1)
        except ConnectionResetError:
            data = b""
        fates["served" if data == b"b" else "reset"] += 1
    assert fates == {"served": len(accepted), "reset": 40 - len(accepted)}
    # new connections all reach the live socket
    late = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(20)]
    time.sleep(0.05)
    assert len(accept_all(b)) == 20
    for s in [*clients, *late, *accepted, b]:
        s.close()


def test_bound_socket_takes_no_connection_before_it_listens() -> None:
    live = reuseport_tcp()
    port = live.getsockname()[1]
    live.listen(64)
    starting = reuseport_tcp(port)  # a replacement worker's socket, its worker not ready
    clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(30)]
    time.sleep(0.05)
    assert len(accept_all(live)) == 30
    starting.listen(64)  # the worker is ready: from now on it takes its share
    more = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(60)]
    time.sleep(0.05)
    assert len(accept_all(starting)) > 0
    for s in [*clients, *more, live, starting]:
        s.close()


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


def test_supervisor_releases_tcp_copies_and_rebinds_without_listening(tmp_path: Path) -> None:
    config = load_config(["--listen-addr", "127.0.0.1:0", "--processes", "2",
                          "--document-root", str(tmp_path)], {})
    listeners = bind_listeners(config)
    port = listeners.http[0].getsockname()[1]
    try:
        listeners.release(0)  # worker 0 has inherited it (here: nobody has, it closes)
        assert listeners.http[0].fileno() == -1
        listeners.rebind(0)
        fresh = listeners.http[0]
        assert fresh.getsockname()[1] == port
        assert fresh.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(20)]
        time.sleep(0.05)
        assert len(accept_all(listeners.http[1])) == 20
        listeners.rebind(0)  # open sockets are kept as they are
        assert listeners.http[0] is fresh
        for c in clients:
            c.close()
    finally:
        for s in listeners.http:
            s.close()


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

