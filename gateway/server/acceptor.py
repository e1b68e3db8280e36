"""Accepts from a listening socket that every worker process shares, one connection at a
time, and only while this worker holds no more connections than the least-loaded one
(gateway/server/balance.py): nginx's accept balancing, with counts instead of a mutex.

libuv's own accept loop (create_server) takes every queued connection at once, so with one
shared socket the first worker to wake took a whole burst; SO_REUSEPORT sockets spread
connections by address hash instead, which split 50 keep-alive clients anywhere from 21/29
to 29/21 and ten from 2/8 to 7/3. Here the socket is watched with add_reader; a worker that
should leave a connection to a peer stops watching, and looks again as soon as one of its
own connections closes, else every RECHECK_SECS while one waits (without the first, clients
that connect for every request got half the req/s: deferring workers sat out their
millisecond while the others were busy). The least-loaded worker always accepts, so no
connection waits on the rule; if one still waits STALL_SECS (the peer it was left to is
stuck), it is taken anyway.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import ssl
import traceback
from collections.abc import Callable

import structlog

from gateway.server.balance import WorkerLoad

log = structlog.get_logger("gateway.server")

RECHECK_SECS = 0.001  # a worker that left a connection to a peer looks again this soon
STALL_SECS = 0.05  # a connection nobody took for this long is taken whatever the counts
ACCEPT_BATCH = 64  # connections taken in one wake-up at most, as asyncio's backlog loop
RETRY_SECS = 1.0  # out of descriptors or memory: try again after this long (as asyncio)
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class BalancedAcceptor:
    """Feeds the connections it accepts to `factory`'s protocols, as create_server would."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        load: WorkerLoad,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.load = load
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self._fd = sock.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        self._starting: set[asyncio.Task[object]] = set()
        self._closed = False

    def start(self) -> None:
        self.sock.setblocking(False)
        self.load.join()
        self._watch()

    def close(self) -> None:
        """Stop accepting and close this process's copy of the socket (the others keep
        theirs)."""
        if self._closed:
            return
        self._closed = True
        self.load.leave()
        self.load.deferring.discard(self._on_count_dropped)
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sock.close()

    def _watch(self) -> None:
        if not self._reading:
            self.loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _unwatch(self) -> None:
        if self._reading:
            self.loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self.load.may_accept():
                self._pause(RECHECK_SECS)
                return
            if not self._accept_one():
                return

    def _pause(self, delay: float) -> None:
        self._unwatch()
        if self._timer is None:
            self._timer = self.loop.call_later(delay, self._recheck)
        if delay == RECHECK_SECS:
            self.load.deferring.add(self._on_count_dropped)

    def _on_count_dropped(self) -> None:
        """One of this worker's connections closed while it left new ones to a peer."""
        if self.load.may_accept():
            if self._timer is not None:
                self._timer.cancel()
            self._resume()

    def _resume(self) -> None:
        self._timer = None
        self._waiting_since = None
        self.load.deferring.discard(self._on_count_dropped)
        self._watch()  # level-triggered: a connection queued meanwhile wakes us at once

    def _recheck(self) -> None:
        self._timer = None
        if self._closed:
            return
        if self.load.may_accept() or not self._poll.poll(0):
            self._resume()
            return
        now = self.loop.time()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since >= STALL_SECS:
            self._waiting_since = now  # one such connection per STALL_SECS at most
            self._accept_one()
        if self._timer is None:  # (a failed accept may have set a longer one)
            self._timer = self.loop.call_later(RECHECK_SECS, self._recheck)

    def _accept_one(self) -> bool:
        """Take one queued connection; False when there was none (or no descriptor)."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionAbortedError:
            return True  # the client gave up while queued: look at the next one
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                log.error("cannot accept connections; retrying", error=exc.strerror,
                          retry_in=RETRY_SECS)
            else:
                log.exception("accept failed; retrying", retry_in=RETRY_SECS)
            self._pause(RETRY_SECS)
            return False
        conn.setblocking(False)
        # counted from now on (a burst must not all land here during TLS handshakes); the
        # server state uncounts it when it closes, or here if it never opens
        self.load.add(1)
        task = self.loop.create_task(self.loop.connect_accepted_socket(
            self.factory, conn, ssl=self.ssl_context,
            ssl_handshake_timeout=self.handshake_timeout))
        self._starting.add(task)
        task.add_done_callback(self._started)
        return True

    def _started(self, task: asyncio.Task[object]) -> None:
        self._starting.discard(task)
        # success: the protocol's connection_made has run, so the state has it (or refused
        # it); else it never opened (a failed or timed-out TLS handshake, a reset)
        if task.cancelled():
            self.load.add(-1)
        elif (exc := task.exception()) is not None:
            self.load.add(-1)
            # the frames keep the protocol, whose release counts a failed TLS handshake
            traceback.clear_frames(exc.__traceback__)
