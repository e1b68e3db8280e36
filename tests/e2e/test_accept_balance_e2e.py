"""Accept balancing on the real server: worker processes share one listening socket and each
accepts only while it holds no more connections than the least-loaded one (plus SLACK), so
keep-alive clients split evenly; a killed worker leaves no connection waiting, and its
replacement takes the new ones until it has caught up."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import Server, start_server
from test_crash_drain_framing import children, records, wait_until

pytestmark = pytest.mark.e2e

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_conns(port: int, n: int, tls: ssl.SSLContext | None = None) -> list[Conn]:
    return list(await asyncio.gather(*(
        asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                server_hostname="127.0.0.1" if tls else None)
        for _ in range(n))))


async def pid_of(conn: Conn) -> int:
    """Which worker process serves this keep-alive connection."""
    reader, writer = conn
    writer.write(b"GET /pid.php HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(await reader.readexactly(length))


async def pids(conns: list[Conn], timeout: float = 10) -> list[int]:
    return list(await asyncio.wait_for(asyncio.gather(*(pid_of(c) for c in conns)), timeout))


async def close(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.2)  # the workers see them go


def assert_even(served: list[int], workers: list[int]) -> None:
    split = Counter(served)
    assert set(split) == set(workers), split
    share = len(served) / len(workers)
    assert all(abs(n - share) <= 2 for n in split.values()), split


@pytest.fixture
def two(tmp_path: Path, docroot: Path) -> Iterator[Server]:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2)
    yield s
    s.stop()


async def test_keep_alive_connections_split_evenly(two: Server) -> None:
    workers = children(two.proc.pid)
    for _ in range(3):  # a burst at once, as wrk -c opens its connections
        conns = await open_conns(two.port, 20)
        assert_even(await pids(conns), workers)
        await close(conns)


async def test_tls_connections_split_evenly(tmp_path: Path, docroot: Path,
                                            certs: dict[str, str]) -> None:
    """Counted from accept, through the TLS handshake: ten at once split 5/5, as h2load -c10
    opens them."""
    s = start_server(tmp_path, docroot, "--processes", "2", "--http3", "off",
                     workers_ready=2, tls=(certs["cert"], certs["key"]))
    tls = ssl.create_default_context(cafile=certs["ca"])
    try:
        workers = children(s.proc.pid)
        for _ in range(3):
            conns = await open_conns(s.port, 10, tls)
            assert_even(await pids(conns), workers)
            await close(conns)
    finally:
        s.stop()


async def test_a_killed_worker_leaves_no_connection_waiting(two: Server) -> None:
    """The survivor holds more connections than the dead worker had: it accepts anyway,
    at once; the replacement then takes every new connection until it has caught up."""
    held = await open_conns(two.port, 10)
    served = await pids(held)
    victim, survivor = served[0], next(p for p in served if p != served[0])
    await close([c for c, p in zip(held, served, strict=True) if p == victim])
    held = [c for c, p in zip(held, served, strict=True) if p == survivor]
    os.kill(victim, signal.SIGKILL)
    await asyncio.sleep(0.05)  # the kernel has closed the dead process's descriptors
    start = time.monotonic()
    fresh = await open_conns(two.port, 20)
    assert set(await pids(fresh, timeout=5)) <= {survivor}
    assert time.monotonic() - start < 1.0
    held += fresh
    await asyncio.get_running_loop().run_in_executor(
        None, wait_until, lambda: len(records(two, "worker ready")) == 3, 30,
        "the replacement ready", two)
    replacement = records(two, "worker ready")[-1]["pid"]
    late = await open_conns(two.port, 10)  # the survivor holds 25: all go to the replacement
    # (but one that waits 50 ms for a replacement still settling in is the survivor's)
    assert (await pids(late)).count(replacement) >= 8
    await close(held + late)
