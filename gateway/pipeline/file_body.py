"""Static file bodies that a connection may hand to the kernel instead of copying.

The static stage (gateway/pipeline/static.py) holds small files in memory; their body is a
`FileBytes`: ordinary bytes to every stage and protocol that reads them, which also name an
`OpenFile`, a descriptor of the same file version kept open. A connection that can
(HTTP/1.1 over plain TCP: gateway/server/h1_connection.py) sends such a body with
sendfile(2) from that descriptor, the kernel taking pages it already holds instead of a copy
of our bytes; a stage that transforms the body (compression, a range's slice) makes plain
bytes, which go the ordinary way. The descriptor is used while a fstat, at most once a
second as the router's own stat (CHECK_EVERY), finds the version the response describes
(size and mtime); once it finds another (a file rewritten in place), the body goes from the
bytes in memory, which match the response's headers. Within that second the kernel may send
the rewritten bytes, as nginx does within its open_file_cache_valid. A file replaced by a
rename (a deploy) is no concern: the descriptor still reads the version it was opened on.

`OpenFiles` bounds the descriptors kept open, one per path (a newer version of a path closes
the older one) and at most `limit` in all, least recently used closed first, like nginx's
open_file_cache. A closed `OpenFile` says so (fd -1) and the body goes from memory.
"""

from __future__ import annotations

import os
from collections import OrderedDict

MAX_OPEN_FILES = 128
CHECK_EVERY = 1.0  # seconds between two fstats of a descriptor, as the router's stat cache


class OpenFile:
    """A read-only descriptor of one version (size, mtime) of a file."""

    __slots__ = ("checked_until", "fd", "mtime_ns", "path", "size")

    def __init__(self, fd: int, path: str, size: int, mtime_ns: int) -> None:
        self.fd = fd
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.checked_until = 0.0

    def current(self, now: float) -> bool:
        """True while the descriptor is open and its file is still this version, as a fstat
        found at most CHECK_EVERY seconds before `now` (a monotonic clock: loop.time())."""
        if self.fd < 0:
            return False
        if now < self.checked_until:
            return True
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            return False
        self.checked_until = now + CHECK_EVERY
        return True

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class FileBytes(bytes):
    """Bytes [offset, offset + len) of the file `file` describes, held in memory too."""

    file: OpenFile | None
    offset: int


def file_bytes(data: bytes, file: OpenFile | None, offset: int = 0) -> FileBytes:
    body = FileBytes(data)
    body.file = file
    body.offset = offset
    return body


class OpenFiles:
    """The descriptors kept open for sendfile: one per path, at most `limit`, LRU. Used on
    the event loop's thread only, so a descriptor is never closed while a send uses it."""

    def __init__(self, limit: int = MAX_OPEN_FILES) -> None:
        self._limit = limit
        self._files: OrderedDict[str, OpenFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    def keep(self, file: OpenFile) -> None:
        """Take ownership of `file`; an older version of its path is closed."""
        old = self._files.pop(file.path, None)
        if old is not None and old is not file:
            old.close()
        self._files[file.path] = file
        while len(self._files) > self._limit:
            _, evicted = self._files.popitem(last=False)
            evicted.close()

    def touch(self, file: OpenFile) -> None:
        """`file` was just used: it is the last to be closed (kept in order only once the
        limit is reached; below it nothing is closed for lack of room)."""
        files = self._files
        if len(files) >= self._limit and files.get(file.path) is file:
            files.move_to_end(file.path)

    def drop(self, file: OpenFile) -> None:
        """Close `file` (its version left the memory cache)."""
        if self._files.get(file.path) is file:
            del self._files[file.path]
        file.close()

    def close(self) -> None:
        while self._files:
            _, file = self._files.popitem()
            file.close()
