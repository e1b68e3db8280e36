"""The shared rate-limit table (compiled C, real shared memory): GCRA arithmetic, one limit
across processes, a fixed size that a flood cannot grow or turn against tracked clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from gateway.pipeline.rate_table import RateTable, client_key

SECOND = 1_000_000_000
T0 = 1_000 * SECOND  # a monotonic "now" far from zero


def test_burst_then_the_refill_rate() -> None:
    table = RateTable.create(64, shared=False)
    interval, tolerance = SECOND, 3 * SECOND  # 1 per second, 3 at once
    results = [table.take(7, T0, interval, tolerance) for _ in range(4)]
    assert [allowed for allowed, _ in results] == [True, True, True, False]
    assert [tat for _, tat in results] == [T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND,
                                           T0 + 3 * SECOND]
    assert table.take(7, T0 + SECOND - 1, interval, tolerance)[0] is False
    assert table.take(7, T0 + SECOND, interval, tolerance) == (True, T0 + 4 * SECOND)
    # an idle client gets its whole burst back, never more
    later = T0 + 100 * SECOND
    assert [table.take(7, later, interval, tolerance)[0] for _ in range(4)] == [
        True, True, True, False]
    # other keys have their own allowance
    assert table.take(8, T0, interval, tolerance) == (True, T0 + SECOND)


HAMMER = f"""
import sys
from gateway.pipeline.rate_table import RateTable
table = RateTable.attach(int(sys.argv[1]))
sys.stdin.readline()  # start together
print(sum(table.take(42, {T0}, {SECOND}, 500_000 * {SECOND})[0] for _ in range(200_000)))
"""


def test_one_limit_across_processes() -> None:
    """Four processes race on one key of one shared table (as the workers are given it):
    exactly the burst passes."""
    table = RateTable.create(1024)
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(table.fd)],
                              pass_fds=[table.fd], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1.0)  # let every interpreter reach the start line
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(counts) == 500_000, counts
    assert sum(c > 0 for c in counts) >= 2, counts  # they really raced
    assert table.take(42, T0, SECOND, 500_000 * SECOND)[0] is False


def test_a_flood_of_new_addresses_neither_grows_the_table_nor_refuses() -> None:
    table = RateTable.create(256, shared=False)
    size = len(table._map)
    interval, tolerance = SECOND, 5 * SECOND
    # a tracked client that used its whole burst stays limited throughout
    for _ in range(5):
        assert table.take(1, T0, interval, tolerance)[0]
    refused_new = 0
    for key in range(1_000, 1_001_000):
        refused_new += not table.take(key, T0, interval, tolerance)[0]
    assert refused_new == 0  # every new client got a slot (or one that was nearly full)
    assert len(table._map) == size == 64 + 256 * 16
    # the limited client was the least worth evicting (furthest from full): still limited
    assert table.take(1, T0, interval, tolerance)[0] is False


def test_expired_entries_are_reused_first() -> None:
    table = RateTable.create(8, shared=False)  # one probe window: every key competes
    interval, tolerance = SECOND, 2 * SECOND
    live = list(range(100, 104))
    for key in live:  # four clients in the middle of their allowance
        assert table.take(key, T0, interval, tolerance)[0]
        assert table.take(key, T0, interval, tolerance)[0]
    for key in range(200, 204):  # four that will be idle long enough to be full again
        assert table.take(key, T0 - 10 * SECOND, interval, tolerance)[0]
    for key in range(300, 304):  # newcomers take the expired slots ...
        assert table.take(key, T0, interval, tolerance)[0]
    for key in live:  # ... so the live clients kept their state: still at their limit
        assert table.take(key, T0, interval, tolerance)[0] is False


def test_attach_refuses_what_is_not_a_table() -> None:
    fd = os.memfd_create("not-a-table")
    try:
        os.ftruncate(fd, 4096)
        with pytest.raises(ValueError):
            RateTable.attach(fd)
    finally:
        os.close(fd)


def test_client_keys() -> None:
    v4 = client_key("192.0.2.1")
    assert v4 == client_key("::ffff:192.0.2.1") != client_key("192.0.2.2")
    same64 = client_key("2001:db8:1:2::1")
    assert same64 == client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == client_key(
        "2001:db8:1:2::1%eth0")
    assert same64 != client_key("2001:db8:1:3::1")
    assert client_key("::1") != client_key("0.0.0.1")
    assert v4 >> 56 == 0xFF  # IPv4 keys live where no client /64 can (ff00::/8)
    with pytest.raises(OSError):
        client_key("not-an-address")
    assert socket.inet_pton(socket.AF_INET6, "2001:db8:1:2::")[:8] == same64.to_bytes(8, "big")
