"""The spool behind request and response buffering: order kept across memory and file,
memory bounded per spool and per process, nothing left on disk."""

from __future__ import annotations

import os

import pytest

from gateway.pipeline.spool import SMALL_PIECE, MemoryBudget, Spool, SpoolFull


def drain(spool: Spool) -> bytes:
    out = []
    while data := spool.take(100_000):
        out.append(data)
        spool.sent()
    return b"".join(out)


def test_order_is_kept_across_memory_and_file() -> None:
    budget = MemoryBudget(50_000)
    spool = Spool(budget)
    pieces = [bytes([i]) * 20_000 for i in range(10)]  # 200 kB: most go to the file
    for piece in pieces:
        spool.put(piece)
    assert spool.on_disk and spool.size == 200_000
    assert budget.used <= 50_000
    assert drain(spool) == b"".join(pieces)
    assert spool.size == 0 and budget.used == 0
    spool.close()


def test_a_spool_keeps_at_most_its_own_share_in_memory() -> None:
    budget = MemoryBudget(100 << 20)
    spool = Spool(budget, memory=64 * 1024)
    spool.put(b"a" * 60_000)
    spool.put(b"b" * 60_000)  # past the spool's own 64 KiB: to the file
    assert budget.used == 60_000 and spool.on_disk
    assert drain(spool) == b"a" * 60_000 + b"b" * 60_000
    spool.close()


def test_what_is_taken_counts_until_sent() -> None:
    budget = MemoryBudget(100_000)
    spool = Spool(budget)
    spool.put(b"x" * 80_000)
    data = spool.take()
    assert len(data) == 80_000 and budget.used == 80_000  # a stalled send holds it
    spool.put(b"y" * 80_000)  # no room left: to the file
    assert spool.on_disk
    spool.sent()
    assert budget.used == 0
    other = Spool(budget)
    other.put(b"z" * 100_000)  # another request takes the whole budget
    assert len(spool.take(100_000)) == SMALL_PIECE  # read back in small pieces meanwhile
    spool.close()
    other.close()
    assert budget.used == 0


def test_the_limit_is_enforced() -> None:
    spool = Spool(MemoryBudget(0), limit=1000)
    spool.put(b"x" * 1000)
    with pytest.raises(SpoolFull):
        spool.put(b"x")
    spool.close()


def test_the_temp_file_never_has_a_name(tmp_path: object) -> None:
    spool = Spool(MemoryBudget(0))
    spool.put(b"secret upload")
    fd = spool._fd
    assert os.readlink(f"/proc/self/fd/{fd}").endswith("(deleted)")
    spool.close()
    with pytest.raises(OSError):
        os.fstat(fd)
