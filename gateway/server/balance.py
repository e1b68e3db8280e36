"""Accept balancing: every worker's count of open connections in one small shared table, so
that a worker can tell whether it holds clearly more than the least-loaded one and should
leave the next connection on the shared listening socket to it.

The supervisor makes the table in a memfd (`LoadTable.create`) and passes the descriptor to
each worker (`--load-table-fd`), which maps it (`LoadTable.attach`). One slot per worker:
[pid, connections], two int64 cells. A worker writes only its own slot (`WorkerLoad`): the
pid once it accepts, 0 when it stops (drain); the supervisor zeroes the slot of a worker
that died, so a dead or starting worker never counts as the least-loaded one. Reads of
other slots take no lock: an aligned 8-byte store is not torn on the machines we run on,
and a value one connection old only delays a decision by one connection.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

from gateway.pids import alive

# A worker leaves a connection to its peers while it holds more than this many above the
# least-loaded live worker. 0: ten HTTP/2 clients split 5/5 (1 let 6/4 through, 60 against
# 40 streams); tied workers then take turns, which costs a woken peer nothing but a look.
SLACK = 0
_CELLS = 2  # pid, connections


class LoadTable:
    """The mapped table of every worker's slot."""

    __slots__ = ("_cells", "_map", "fd", "workers")

    def __init__(self, mapping: mmap.mmap, fd: int = -1) -> None:
        self._map = mapping
        self._cells = memoryview(mapping).cast("q")
        self.workers = len(self._cells) // _CELLS
        self.fd = fd  # the memfd when this process made the table (workers inherit it)

    @classmethod
    def create(cls, workers: int) -> LoadTable:
        fd = os.memfd_create("php-gateway-load")
        os.ftruncate(fd, workers * _CELLS * 8)
        return cls(mmap.mmap(fd, workers * _CELLS * 8), fd)

    @classmethod
    def attach(cls, fd: int) -> LoadTable:
        """Maps the table the supervisor made; the descriptor may be closed afterwards."""
        return cls(mmap.mmap(fd, os.fstat(fd).st_size))

    def clear(self, index: int) -> None:
        """The worker is gone (or not started yet): it takes no connection."""
        self._cells[index * _CELLS] = 0
        self._cells[index * _CELLS + 1] = 0

    def slots(self) -> list[tuple[int, int]]:
        """(pid or 0, connections) of every worker."""
        c = self._cells
        return [(c[i], c[i + 1]) for i in range(0, len(c), _CELLS)]

    def worker(self, index: int) -> WorkerLoad:
        return WorkerLoad(self._cells, index)


class WorkerLoad:
    """One worker's own slot, and the balancing rule it accepts by."""

    __slots__ = ("_at", "_cells", "_pid", "count", "deferring")

    def __init__(self, cells: memoryview, index: int) -> None:
        self._cells = cells
        self._at = index * _CELLS
        self._pid = os.getpid()
        # connections of the public TCP listeners, open or accepted and not yet open
        # (a TLS handshake in progress counts: a burst must not all land here meanwhile)
        self.count = 0
        # listeners of this worker that left connections to a peer: told when a connection
        # closes, since this worker may then be the least-loaded one again
        self.deferring: set[Callable[[], None]] = set()

    def join(self) -> None:
        """Accepting from now on: peers take this worker's count into account."""
        self._cells[self._at + 1] = self.count
        self._cells[self._at] = self._pid

    def leave(self) -> None:
        """Draining: no peer waits for this worker to take a connection any more."""
        self._cells[self._at] = 0

    def add(self, n: int) -> None:
        self.count += n
        self._cells[self._at + 1] = self.count
        if n < 0 and self.deferring:
            for recheck in list(self.deferring):
                recheck()

    def may_accept(self) -> bool:
        """False while a live peer holds more than SLACK connections fewer than this worker:
        the least-loaded worker always may, so some worker always accepts."""
        below = self.count - SLACK
        cells = self._cells
        # a peer killed while the supervisor could not zero its slot (the supervisor was
        # killed too) must not hold the others back: its pid is checked
        for at in range(0, len(cells), _CELLS):
            if at != self._at and cells[at + 1] < below and (pid := cells[at]) and alive(pid):
                return False
        return True
