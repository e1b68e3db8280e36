"""Bytes held between two parties that go at different speeds: a request body received before
PHP starts, PHP output a slow client has not taken yet (nginx's request and response
buffering). A spool keeps up to 1 MiB in memory, and all spools of a worker process
together at most BUFFER_MEMORY; beyond either it continues in a temp file that is unlinked
at once, so a large upload or a flood of slow clients costs disk, not memory, and nothing
is left behind by a crash."""

from __future__ import annotations

import os
import tempfile
from collections import deque

SMALL_PIECE = 16 * 1024  # read back from a file when the budget is spent


class MemoryBudget:
    """Bytes every spool of this process may hold in memory together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


class SpoolFull(Exception):
    """The spool holds its limit: the writer must wait for the reader."""


class Spool:
    """A FIFO of bytes: in memory while the budget allows, then in a temp file; the order
    of the bytes is kept across the two."""

    def __init__(self, budget: MemoryBudget, limit: int = 1 << 30,
                 memory: int = 1 << 20) -> None:
        self._budget = budget
        self.limit = limit  # most bytes held at once (memory and file)
        self.memory = memory  # most bytes held in memory (more go to the file)
        self._chunks: deque[bytes] = deque()
        self._in_memory = 0
        self._fd = -1
        self._read_at = 0  # file offsets: what is between them is unread
        self._write_at = 0
        self._lent = 0  # bytes taken and still counted against the budget (see sent())

    @property
    def size(self) -> int:
        """Bytes put and not yet taken."""
        return self._in_memory + self._write_at - self._read_at

    @property
    def on_disk(self) -> bool:
        return self._write_at > self._read_at

    def put(self, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            raise SpoolFull(f"spool holds {self.size} bytes, limit {self.limit}")
        # once bytes wait in the file, later ones go there too: the order must hold
        if not self.on_disk and self._in_memory + len(data) <= self.memory \
                and self._budget.reserve(len(data)):
            self._chunks.append(data)
            self._in_memory += len(data)
            return
        if self._fd < 0:
            self._fd, path = tempfile.mkstemp(prefix="php-gateway-")
            os.unlink(path)
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, self._write_at)
            self._write_at += written
            view = view[written:]

    def take(self, max_bytes: int = 256 * 1024) -> bytes:
        """Up to max_bytes of the oldest bytes; b"" when empty. What is taken stays counted
        against the budget until sent() (a stalled client holds it): read back from the file
        beyond the budget, a piece is only SMALL_PIECE long."""
        self.sent()
        chunks = self._chunks
        if chunks:
            parts = [chunks.popleft()]
            size = len(parts[0])
            while chunks and size + len(chunks[0]) <= max_bytes:
                parts.append(chunks.popleft())
                size += len(parts[-1])
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self._in_memory -= len(data)
            self._lent = len(data)
            return data
        if not self.on_disk:
            return b""
        size = min(max_bytes, self._write_at - self._read_at)
        if self._budget.reserve(size):
            self._lent = size
        else:
            size = min(size, SMALL_PIECE)
        data = os.pread(self._fd, size, self._read_at)
        self._read_at += len(data)
        if self._read_at == self._write_at:  # drained: start the file over
            os.ftruncate(self._fd, 0)
            self._read_at = self._write_at = 0
        return data

    def sent(self) -> None:
        """What take() returned has left: it no longer counts against the budget."""
        if self._lent:
            self._budget.release(self._lent)
            self._lent = 0

    def take_all(self) -> bytes:
        """Everything at once (a small request body that stayed in memory)."""
        parts = []
        while data := self.take(1 << 30):
            parts.append(data)
        self.sent()
        return b"".join(parts)

    def close(self) -> None:
        self.sent()
        self._budget.release(self._in_memory)
        self._chunks.clear()
        self._in_memory = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._read_at = self._write_at = 0
