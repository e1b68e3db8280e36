"""Accept balancing (gateway/server/balance.py, acceptor.py) on real loopback sockets: workers
that share one listening socket end up with even connection counts, the least-loaded one
always accepts, and a dead, stuck or draining peer never leaves a connection waiting.

Workers here are acceptors on one event loop, each with its own slot of one table and its
own descriptor of the shared socket, as worker processes have theirs. The tests of sockets
run on asyncio's loop and on uvloop (the workers' loop)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest
import uvloop

from gateway.pipeline.context import RequestContext
from gateway.server import acceptor
from gateway.server.acceptor import STALL_SECS, BalancedAcceptor
from gateway.server.balance import SLACK, LoadTable, WorkerLoad
from gateway.server.settings import ServerSettings
from gateway.server.tcp import TCPServer


class Counting(asyncio.Protocol):
    """Answers each connection with its worker's name; uncounts it when it closes, as the
    server state does (gateway/server/tcp.py)."""

    def __init__(self, name: bytes, opened: list[int], load: WorkerLoad) -> None:
        self.name = name
        self.opened = opened
        self.load = load

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.opened[0] += 1
        cast(asyncio.WriteTransport, transport).write(self.name)  # uvloop's: no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.opened[0] -= 1
        self.load.add(-1)


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def worker(loop: asyncio.AbstractEventLoop, table: LoadTable, index: int,
           sock: socket.socket) -> tuple[BalancedAcceptor, list[int]]:
    opened = [0]
    load = table.worker(index)
    acceptor = BalancedAcceptor(loop, socket.socket(fileno=os.dup(sock.fileno())),
                                lambda: Counting(b"%d" % index, opened, load), load)
    acceptor.start()
    return acceptor, opened


async def connect(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return list(await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(n))))


async def served_by(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                    timeout: float = 2) -> list[bytes]:
    return list(await asyncio.wait_for(
        asyncio.gather(*(r.readexactly(1) for r, _ in conns)), timeout))


def close(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, w in conns:
        w.close()


LOOPS = ["asyncio", "uvloop"]


def run(kind: str, coro: Coroutine[Any, Any, None]) -> None:
    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


def test_the_least_loaded_live_worker_always_may_accept() -> None:
    table = LoadTable.create(3)
    least, within, above = (table.worker(i) for i in range(3))
    for w, count in ((least, 4), (within, 4 + SLACK), (above, 4 + SLACK + 1)):
        w.join()
        w.add(count)
    assert least.may_accept()
    assert within.may_accept()
    assert not above.may_accept()  # it holds clearly more than `least`
    least.leave()  # draining: nobody waits for it to take a connection any more
    assert above.may_accept() == (above.count <= within.count + SLACK)
    within.leave()
    assert above.may_accept()  # the only one accepting
    assert table.slots() == [(0, 4), (0, 4 + SLACK), (os.getpid(), 4 + SLACK + 1)]
    table.clear(2)  # the supervisor saw worker 2 die
    assert table.slots()[2] == (0, 0)


def test_a_peer_whose_process_is_gone_does_not_hold_back_the_others() -> None:
    """As when the supervisor itself was killed and could not clear the slot."""
    table = LoadTable.create(2)
    live = table.worker(0)
    live.join()
    live.add(10)
    code = ("import sys; from gateway.server.balance import LoadTable; "
            "LoadTable.attach(int(sys.argv[1])).worker(1).join()")
    subprocess.run([sys.executable, "-c", code, str(table.fd)], pass_fds=[table.fd],
                   check=True)  # joined with 0 connections, then exited (and was reaped)
    pid, count = table.slots()[1]
    assert pid > 0 and count == 0
    assert live.may_accept()


@pytest.mark.parametrize("kind", LOOPS)
def test_two_workers_split_a_burst_evenly(kind: str) -> None:
    run(kind, _two_workers_split_a_burst_evenly())


async def _two_workers_split_a_burst_evenly() -> None:
    loop = asyncio.get_running_loop()
    sock = listener()
    port = sock.getsockname()[1]
    table = LoadTable.create(2)
    (a, a_open), (b, _) = worker(loop, table, 0, sock), worker(loop, table, 1, sock)
    sock.close()  # only the workers' descriptors keep it
    try:
        conns = await connect(port, 20)
        names = await served_by(conns)
        assert sorted(names.count(n) for n in (b"0", b"1")) == [10, 10], names
        assert table.slots() == [(os.getpid(), 10), (os.getpid(), 10)]
        # the clients of one worker leave: the next connections all go to it
        close([c for c, n in zip(conns, names, strict=True) if n == b"0"])
        await asyncio.sleep(0.1)
        assert (a_open[0], a.load.count) == (0, 0)
        more = await connect(port, 10)
        assert await served_by(more) == [b"0"] * 10
        close(conns + more)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_a_stuck_peer_does_not_leave_connections_waiting(kind: str) -> None:
    run(kind, _a_stuck_peer_does_not_leave_connections_waiting())


async def _a_stuck_peer_does_not_leave_connections_waiting() -> None:
    """A peer that is alive and least loaded but never accepts (its loop is blocked): a
    connection is taken anyway after STALL_SECS, one at a time."""
    loop = asyncio.get_running_loop()
    sock = listener()
    port = sock.getsockname()[1]
    table = LoadTable.create(2)
    stuck = table.worker(1)
    stuck.join()  # live, 0 connections, and nothing ever accepts for it
    busy, _ = worker(loop, table, 0, sock)
    try:
        first = await connect(port, 1)
        assert await served_by(first) == [b"0"]  # 0 against 0: it may
        start = time.monotonic()
        second = await connect(port, 3)
        assert await served_by(second, timeout=5) == [b"0"] * 3
        took = time.monotonic() - start
        assert STALL_SECS <= took < 1.0, took
        close(first + second)
    finally:
        busy.close()
        sock.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_close_stops_accepting_and_leaves_the_socket_to_the_others(kind: str) -> None:
    run(kind, _close_stops_accepting_and_leaves_the_socket_to_the_others())


async def _close_stops_accepting_and_leaves_the_socket_to_the_others() -> None:
    loop = asyncio.get_running_loop()
    sock = listener()
    port = sock.getsockname()[1]
    table = LoadTable.create(2)
    (a, _), (b, _) = worker(loop, table, 0, sock), worker(loop, table, 1, sock)
    sock.close()
    try:
        warm = await connect(port, 4)
        await served_by(warm)
        a.close()  # a drains: its slot says so, b takes everything new
        assert table.slots()[0][0] == 0
        conns = await connect(port, 6)
        assert await served_by(conns) == [b"1"] * 6
        close(warm + conns)
    finally:
        a.close()
        b.close()
    await asyncio.sleep(0)
    with socket.socket() as probe:  # every descriptor closed: the port refuses
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def hello(ctx: RequestContext) -> None:
    await ctx.send_response(200, [(b"content-length", b"2")])
    await ctx.send_data(b"ok")
    await ctx.end()


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


@pytest.mark.parametrize("kind", LOOPS)
def test_the_server_keeps_its_slot_to_the_connections_it_holds(kind: str) -> None:
    run(kind, _the_server_keeps_its_slot_to_the_connections_it_holds())


async def _the_server_keeps_its_slot_to_the_connections_it_holds() -> None:
    """TCPServer with a load: a connection counts from accept to close, one refused by
    MAX_CONNECTIONS or one whose TLS handshake fails stops counting."""
    sock = listener()
    port = sock.getsockname()[1]
    table = LoadTable.create(1)
    load = table.worker(0)
    server = TCPServer(hello, ServerSettings(max_connections=2), load=load)
    await server.start(sock=sock)
    try:
        conns = await connect(port, 3)  # the third is over MAX_CONNECTIONS: closed at once
        for r, w in conns[:2]:
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await r.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        assert await conns[2][0].read() == b""
        await until(lambda: load.count == 2, f"2 counted, not {load.count}")
        assert table.slots() == [(os.getpid(), 2)]
        close(conns)
        await until(lambda: load.count == 0, f"none counted, not {load.count}")
    finally:
        await server.drain(0)
    assert table.slots()[0][0] == 0  # drained: no longer accepting


@pytest.mark.parametrize("kind", LOOPS)
def test_a_failed_tls_handshake_stops_counting(kind: str) -> None:
    run(kind, _a_failed_tls_handshake_stops_counting())


async def _a_failed_tls_handshake_stops_counting() -> None:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    sock = listener()
    port = sock.getsockname()[1]
    load = LoadTable.create(1).worker(0)
    server = TCPServer(hello, ServerSettings(tls_handshake_timeout=0.2), ssl_context=ctx,
                       load=load)
    await server.start(sock=sock)
    try:
        silent = await connect(port, 1)  # says nothing: the handshake times out
        await until(lambda: load.count == 1, "counted while in its handshake")
        await until(lambda: load.count == 0, f"not counted after it, {load.count}")
        garbage = await connect(port, 1)
        garbage[0][1].write(b"GET / HTTP/1.1\r\n\r\n")  # not a TLS ClientHello
        assert await garbage[0][0].read() == b""
        await until(lambda: load.count == 0, f"not counted after it, {load.count}")
        assert server.state.tls_handshake_failures >= 1
        close(garbage + silent)
    finally:
        await server.drain(0)


@pytest.mark.parametrize("kind", LOOPS)
def test_a_worker_whose_connection_closes_takes_the_next_at_once(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Left to a peer (here one that never accepts), a waiting connection is taken as soon
    as one of this worker's own closes, not at its next look: with clients that connect for
    every request, a worker that defers must not sit out while the others are busy (that
    halved wrk's req/s with Connection: close)."""
    monkeypatch.setattr(acceptor, "RECHECK_SECS", 0.5)  # looks seldom: only the close helps
    run(kind, _a_worker_whose_connection_closes_takes_the_next_at_once())


async def _a_worker_whose_connection_closes_takes_the_next_at_once() -> None:
    loop = asyncio.get_running_loop()
    sock = listener()
    port = sock.getsockname()[1]
    table = LoadTable.create(2)
    table.worker(1).join()  # live, 0 connections, never accepts
    busy, _ = worker(loop, table, 0, sock)
    try:
        first = await connect(port, 1)
        assert await served_by(first) == [b"0"]
        waiting = await connect(port, 1)
        await asyncio.sleep(0.05)  # left to the peer
        start = time.monotonic()
        close(first)
        assert await served_by(waiting) == [b"0"]
        assert time.monotonic() - start < 0.25
        close(waiting)
    finally:
        busy.close()
        sock.close()
