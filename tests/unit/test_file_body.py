"""File bodies for sendfile: the descriptors the static stage keeps open, how many, which
version they stand for, and that a body is ordinary bytes to everyone else."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.pipeline.file_body import CHECK_EVERY, FileBytes, OpenFile, OpenFiles, file_bytes
from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import StaticFiles
from gateway.protocol.events import Request


def open_file(path: Path) -> OpenFile:
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return OpenFile(fd, str(path), st.st_size, st.st_mtime_ns)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_file_bytes_are_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    body = file_bytes(b"abc", open_file(tmp_path / "a"), 0)
    assert body == b"abc" and len(body) == 3 and isinstance(body, bytes)
    assert type(body[1:]) is bytes  # a slice is plain bytes: it goes the ordinary way
    assert type(b"".join([body])) is bytes


def test_current_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"one")
    file = open_file(path)
    assert file.current(100.0)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file.current(100.0 + CHECK_EVERY / 2)  # checked a moment ago: no fstat yet
    assert not file.current(100.0 + CHECK_EVERY)  # touched: not the version of the response
    file.close()
    assert file.fd == -1 and not file.current(0.0)
    file.close()  # twice is harmless


def test_open_files_keep_one_per_path_and_at_most_limit(tmp_path: Path) -> None:
    files = OpenFiles(limit=2)
    paths = []
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode())
        paths.append(tmp_path / name)
    a, b = open_file(paths[0]), open_file(paths[1])
    files.keep(a)
    files.keep(b)
    files.touch(a)  # b is now the least recently used
    c = open_file(paths[2])
    fd_b = b.fd
    files.keep(c)
    assert len(files) == 2 and b.fd == -1 and not is_open(fd_b)
    assert a.fd >= 0 and c.fd >= 0
    newer_a = open_file(paths[0])
    fd_a = a.fd
    files.keep(newer_a)  # a newer version of the same path closes the older
    assert a.fd == -1 and not is_open(fd_a) and newer_a.fd >= 0
    files.drop(c)
    assert c.fd == -1 and len(files) == 1
    files.close()
    assert newer_a.fd == -1 and len(files) == 0


def route_for(path: Path) -> StaticFile:
    st = path.stat()
    return StaticFile(path, st.st_size, st.st_mtime_ns)


GET = Request(1, b"GET", b"/x", [], "1.1")


async def test_cached_body_carries_its_open_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 5000)
    files = StaticFiles(60)
    response = await files.prepare(GET, route_for(path))
    body = response.body
    assert type(body) is FileBytes and body == b"x" * 5000
    assert body.file is not None and body.file.current(0.0) and body.offset == 0
    ranged = await files.prepare(Request(1, b"GET", b"/x", [(b"range", b"bytes=0-9")], "1.1"),
                                 route_for(path))
    assert ranged.status == 206 and type(ranged.body) is bytes


async def test_evicted_descriptor_is_reopened_in_the_background(tmp_path: Path) -> None:
    files = StaticFiles(60)
    files._open = OpenFiles(limit=1)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a" * 100)
    b.write_bytes(b"b" * 100)
    first = (await files.prepare(GET, route_for(a))).body
    await files.prepare(GET, route_for(b))
    assert isinstance(first, FileBytes) and first.file is not None and first.file.fd == -1
    again = await files.prepare(GET, route_for(a))
    assert again.body == b"a" * 100  # answered from memory meanwhile
    for _ in range(100):
        if first.file is not None and first.file.fd >= 0:
            break
        await asyncio.sleep(0.01)
    assert first.file is not None and first.file.current(0.0)


async def test_memory_eviction_closes_the_descriptor(tmp_path: Path) -> None:
    files = StaticFiles(60, memory_cache_bytes=150)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a" * 100)
    b.write_bytes(b"b" * 100)
    first = (await files.prepare(GET, route_for(a))).body
    assert isinstance(first, FileBytes) and first.file is not None
    fd = first.file.fd
    await files.prepare(GET, route_for(b))  # over the memory budget: a leaves the cache
    assert first.file.fd == -1 and not is_open(fd)
