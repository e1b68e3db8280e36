"""The request body between a connection, which feeds it, and the app, which reads it.

`RequestBody` is the part every RequestContext (HTTP/1.1, HTTP/2, HTTP/3) shares: the
queue of chunks that arrived, the waiter of receive(), the end of the body. What differs is
in four hooks: what consuming a chunk does (HTTP/1 resumes parsing below a high-water mark,
HTTP/2 and HTTP/3 grant flow-control credit), whether more body can still come, and what
starts and ends a wait (the body timeout; HTTP/1 also sends 100 Continue).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import ClassVar

from gateway.protocol.events import Request


class RequestBody:
    """Base of the per-request contexts: their receive() and the feed behind it."""

    __slots__ = ("_body_done", "_buffered", "_chunks", "_waiter", "request")

    # receive() joins queued chunks into one of up to this many bytes (0: one chunk each)
    _JOIN_UP_TO: ClassVar[int] = 0
    # the message of the ConnectionResetError receive() raises once _readable() says no
    _GONE: ClassVar[str]
    disconnected: asyncio.Event  # the RequestContext's, a slot of the subclass

    def __init__(self, request: Request) -> None:
        self.request = request
        self._chunks: deque[bytes] | None = None  # made by the first chunk: most requests have none
        self._buffered = 0
        self._body_done = not request.has_body
        self._waiter: asyncio.Future[None] | None = None

    # -- hooks ---------------------------------------------------------------------------

    def _consumed(self, size: int) -> None:
        """The app took `size` bytes (already off `_buffered`): let more come."""
        raise NotImplementedError

    def _readable(self) -> bool:
        """False once no more body can come (peer gone, stream reset, request over)."""
        return not self.disconnected.is_set()

    def _wait_begins(self) -> asyncio.TimerHandle | None:
        """receive() is about to wait for body bytes: arm the body timeout."""
        raise NotImplementedError

    def _wait_over(self, timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    # -- fed by the connection -----------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append(data)
        self._buffered += len(data)
        self._wake()

    def _end_body(self) -> None:
        self._body_done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _discard_unread(self) -> int:
        """Drop the body the app did not read; returns how many bytes that was."""
        unread = self._buffered
        if self._chunks is not None:
            self._chunks.clear()
        self._buffered = 0
        return unread

    # -- the RequestContext API ----------------------------------------------------------

    async def receive(self) -> bytes | None:
        """Next request-body chunk; None once the body is complete (see RequestContext)."""
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft()
                if chunks and len(chunk) < self._JOIN_UP_TO:
                    chunk = self._join(chunk, chunks)
                size = len(chunk)
                self._buffered -= size
                self._consumed(size)
                return chunk
            if self._body_done:
                return None
            if not self._readable():
                raise ConnectionResetError(self._GONE)
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            timer = self._wait_begins()
            try:
                await waiter
            finally:
                self._waiter = None
                self._wait_over(timer)

    def take_complete_body(self) -> bytes | None:
        """The whole body at once if every byte of it has already arrived, else None (and
        nothing is consumed): small forms then skip the streaming machinery."""
        if not self._body_done:
            return None
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._consumed(len(data))
        return data

    def _join(self, first: bytes, chunks: deque[bytes]) -> bytes:
        parts = [first]
        size = len(first)
        while chunks and size + len(chunks[0]) <= self._JOIN_UP_TO:
            part = chunks.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)
