"""The rate-limit state of the whole server: one fixed-size table in shared memory that every
worker process updates atomically (like nginx's `limit_req_zone`), so a client gets
RATE_LIMIT per RATE_WINDOW however the kernel spreads its connections over the processes.

The supervisor creates the table in a memfd (`RateTable.create`) and passes the descriptor
to each worker (`--rate-table-fd`), which maps it (`attach_inherited`). The slots and their
compare-and-swap updates are C (rate_table.c, compiled by `make bridge`); the table never
grows: RATE_LIMIT_MAX_CLIENTS slots of 16 bytes, expired entries reused first.
"""

from __future__ import annotations

import importlib
import mmap
import os
import secrets
import socket
from typing import Any

_IPV4_KEY_PREFIX = 0xFFFF_FFFF << 32  # IPv4 keys sit in ff00::/8, never a client's /64


def _library() -> tuple[Any, Any]:
    try:
        module = importlib.import_module("gateway.pipeline._rate_table")
    except ImportError as exc:
        raise RuntimeError("the rate-limit table is not compiled: run `make bridge` "
                           "(python -m gateway.pipeline.rate_table_build)") from exc
    return module.ffi, module.lib


class RateTable:
    """A mapped table; `take` charges one request to a client key."""

    __slots__ = ("_lib", "_map", "_mem", "_tat", "capacity", "fd")

    def __init__(self, mapping: mmap.mmap, fd: int = -1) -> None:
        ffi, lib = _library()
        self._map = mapping
        self._mem = ffi.from_buffer(mapping)
        if not lib.rt_valid(self._mem, len(mapping)):
            raise ValueError("not a rate-limit table")
        self._lib = lib
        self._tat = ffi.new("int64_t *")
        self.capacity = int(lib.rt_capacity(self._mem))
        self.fd = fd  # the memfd when this process made the table (workers inherit it)

    @classmethod
    def create(cls, capacity: int, shared: bool = True) -> RateTable:
        """A new empty table; `shared` puts it in a memfd that child processes can map."""
        _, lib = _library()
        size = int(lib.rt_bytes(capacity))
        fd = -1
        if shared:
            fd = os.memfd_create("php-gateway-rate-limit")
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        else:
            mapping = mmap.mmap(-1, size)
        ffi, _ = _library()
        lib.rt_init(ffi.from_buffer(mapping), capacity, secrets.randbits(64))
        return cls(mapping, fd)

    @classmethod
    def attach(cls, fd: int) -> RateTable:
        """Maps the table another process made; the descriptor may be closed afterwards."""
        return cls(mmap.mmap(fd, os.fstat(fd).st_size))

    def take(self, key: int, now_ns: int, interval_ns: int, tolerance_ns: int) -> tuple[bool, int]:
        """One request for `key` at `now_ns`: (allowed, the key's TAT afterwards)."""
        allowed = self._lib.rt_take(self._mem, key, now_ns, interval_ns, tolerance_ns, self._tat)
        return bool(allowed), int(self._tat[0])


_inherited: RateTable | None = None


def attach_inherited(fd: int) -> None:
    """Worker start-up: map the supervisor's table (every process then shares one limit)."""
    global _inherited
    _inherited = RateTable.attach(fd)
    os.close(fd)


def table_for(capacity: int) -> RateTable:
    """The table this process limits with: the supervisor's when inherited, else its own
    (a worker run alone, a test building the pipeline directly)."""
    global _inherited
    if _inherited is None:
        _inherited = RateTable.create(capacity, shared=False)
    return _inherited


def client_key(address: str) -> int:
    """64-bit table key of a client address: IPv4 whole, IPv6 by its /64 (one subscriber's
    prefix: a client rotating its interface identifier stays one client)."""
    if ":" not in address:
        return _IPV4_KEY_PREFIX | int.from_bytes(socket.inet_aton(address), "big")
    packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped (a dual-stack listener)
        return _IPV4_KEY_PREFIX | int.from_bytes(packed[12:], "big")
    return int.from_bytes(packed[:8], "big")
