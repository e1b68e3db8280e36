"""One request of any protocol, from its head to the end of its app task.

`RequestStream` is the RequestContext the pipeline sees (gateway/pipeline/context.py) and the
only place the request lifecycle is written: the app task and its counters, the request
body queue and its timeout, the response state (open / started / ended), HEAD and
204/304 body suppression, the send timeout, and what happens when the app fails (a 500
through the chain while nothing was sent, else a reset or a close). The HTTP/1.1, HTTP/2
and HTTP/3 connections only turn wire events into calls on it (`feed`, `end_body`,
`disconnect`, `fail`) and implement `StreamOwner` to put its output on the wire.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from gateway.pipeline.responses import respond_status
from gateway.protocol.events import Headers, Request
from gateway.server.state import ServerState, log

_OPEN, _STARTED, _ENDED = range(3)  # response state
_BODYLESS_STATUS = frozenset({204, 304})
_Task = asyncio.Task
_TASK_NAME = "request"


class StreamOwner(Protocol):
    """What a connection does for its request streams."""

    state: ServerState
    loop: asyncio.AbstractEventLoop

    def write_head(self, stream: RequestStream, status: int, headers: Headers) -> None: ...

    def write_interim(self, stream: RequestStream, status: int, headers: Headers) -> None:
        """An interim (1xx) response ahead of the head; nothing where it cannot go."""
        ...

    def write_body(self, stream: RequestStream, data: bytes | memoryview) -> int:
        """Frame and queue body bytes; returns how many were taken (HTTP/2: up to its window)."""
        ...

    def must_wait(self, stream: RequestStream, more: bool) -> bool:
        """True if the stream must wait for wake_sender() before sending more: the transport
        is above its high-water mark, or `more` bytes are left and there is no window."""
        ...

    def write_end(self, stream: RequestStream) -> None: ...

    def abort_stream(self, stream: RequestStream) -> None:
        """A response that cannot be completed: reset the stream (HTTP/2, HTTP/3) or close the
        connection (HTTP/1), so the client does not take a cut response for a whole one. The
        reset says "internal error" for an app failure, "cancel" once the stream is
        disconnected (a timeout)."""
        ...

    def body_consumed(self, stream: RequestStream, size: int) -> None:
        """The app took `size` body bytes: let more come (window credit, resume reading)."""
        ...

    def body_wanted(self, stream: RequestStream) -> None:
        """The app waits for body bytes (HTTP/1: 100 Continue, resume parsing)."""
        ...

    def stream_over(self, stream: RequestStream) -> None:
        """The app task has ended: forget the stream."""
        ...


class RequestStream:
    __slots__ = (
        "_body_done",
        "_body_gone",
        "_body_waiter",
        "_buffered",
        "_chunks",
        "_disconnected",
        "_fail_status",
        "_gone",
        "_no_body",
        "_owner",
        "_response",
        "_running",
        "_send_waiter",
        "_task",
        "bytes_received",
        "bytes_sent",
        "client",
        "error_status",
        "request",
        "server",
        "stream_id",
        "tls",
    )

    # receive() joins queued chunks into one of up to this many bytes
    JOIN_UP_TO = 64 * 1024

    def __init__(
        self,
        owner: StreamOwner,
        request: Request,
        client: tuple[str, int],
        server: tuple[str, int],
        tls: bool,
        error_status: int | None = None,
    ) -> None:
        self.request = request
        self.stream_id = request.stream_id
        self.client = client
        self.server = server
        self.tls = tls
        self.error_status = error_status
        self._gone = False  # the peer is gone (see disconnected)
        self._disconnected: asyncio.Event | None = None  # made when someone asks for it
        self._owner = owner
        self._chunks: deque[bytes] | None = None  # made by the first chunk: most have none
        self._buffered = 0
        self._body_done = not request.has_body
        self._body_gone = False  # no more body will come: the request is over for the reader
        self._body_waiter: asyncio.Future[None] | None = None
        self._send_waiter: asyncio.Future[None] | None = None
        self._response = _OPEN
        self._no_body = False
        self._fail_status: int | None = None
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.bytes_received = 0  # request body bytes the app took
        self.bytes_sent = 0  # response body bytes the connection took (what left)

    # -- lifetime, driven by the connection ------------------------------------------------

    def start(self) -> None:
        """Run the app for this request in its own task. The task settles the counters in its
        `finally`; it is never cancelled before its first step (see _stop_task), so that
        always runs, also for a request reset before its app started."""
        state = self._owner.state
        state.active_requests += 1
        # the Task itself rather than loop.create_task (no task factory is ever set): with a
        # name given, the task does not format its own "Task-N" (~2,000 instructions)
        self._task = _Task(self._run(), loop=self._owner.loop, context=state.context.copy(),
                           name=_TASK_NAME)

    @property
    def disconnected(self) -> asyncio.Event:
        """Set once the peer is gone (the RequestContext's event, made on first use: the
        stream itself reads a flag)."""
        event = self._disconnected
        if event is None:
            event = self._disconnected = asyncio.Event()
            if self._gone:
                event.set()
        return event

    def disconnect(self) -> None:
        """The peer is gone (stream reset, connection lost): stop the app, send nothing."""
        if self._gone:
            return
        self._gone = True
        if self._disconnected is not None:
            self._disconnected.set()
        self._body_gone = True
        self._wake()
        self._stop_task()

    def fail(self, status: int | None) -> None:
        """Our side gives up on the request (a timeout, a body over the limit): answer
        `status` through the chain if nothing was sent yet, else abort the response."""
        if self._gone or self._fail_status is not None:
            return
        self._fail_status = status or 500
        self._body_gone = True
        self._wake()
        self._stop_task()

    def _stop_task(self) -> None:
        task = self._task
        # a task that has not run yet sees the flags when it starts; cancelling it would
        # skip its body (the done callback still settles it)
        if task is not None and self._running and self._response != _ENDED \
                and task is not asyncio.current_task():
            task.cancel()

    @property
    def response_started(self) -> bool:
        return self._response != _OPEN

    @property
    def waiting_to_send(self) -> bool:
        return self._send_waiter is not None

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet taken by the app."""
        return self._buffered

    async def _run(self) -> None:
        self._running = True
        try:
            if self._gone:
                return
            failed = False
            if self._fail_status is None:
                try:
                    await self._owner.state.app(self)
                except asyncio.CancelledError:
                    if self._fail_status is None or self._gone:
                        return  # the client is gone, or the server is stopping
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()  # we cancelled it to answer below
                except Exception:
                    if self._gone:
                        return  # errors after the client left are expected, not worth a log
                    failed = True
                    log.exception("app failed", method=self.request.method.decode("latin-1"),
                                  target=self.request.target.decode("latin-1"),
                                  protocol=f"HTTP/{self.request.http_version}")
            if self._gone or self._response == _ENDED:
                return
            if self._response == _OPEN:
                await self._answer(self._fail_status or 500)
                if self._response == _ENDED or self._gone:
                    return
            elif not failed and self._fail_status is None:
                log.error("app returned without finishing its response",
                          target=self.request.target.decode("latin-1"))
            self._owner.abort_stream(self)
        finally:
            self._owner.state.active_requests -= 1
            self._owner.stream_over(self)

    async def _answer(self, status: int) -> None:
        """A response the server makes itself, through the chain like any other."""
        self.error_status = status
        try:
            await self._owner.state.app(self)
        except Exception:
            if self._gone:
                return
            log.exception("error response failed", status=status)
            if self._response == _OPEN:  # the chain itself fails: answer without it
                await respond_status(self, status)

    # -- the request body ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append(data)
        self._buffered += len(data)
        self._wake_reader()

    def end_body(self) -> None:
        self._body_done = True
        self._wake_reader()

    def close_body(self) -> None:
        """No more body will come for the app (HTTP/1: the connection moved on)."""
        self._body_gone = True
        self._wake_reader()

    def discard_unread(self) -> int:
        """Drop the body the app did not read; returns how many bytes that was."""
        unread = self._buffered
        if self._chunks is not None:
            self._chunks.clear()
        self._buffered = 0
        return unread

    def _wake_reader(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        self._wake_reader()
        self.wake_sender()

    async def receive(self) -> bytes | None:
        """Next request-body chunk; None once the body is complete (see RequestContext)."""
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft()
                if chunks and len(chunk) < self.JOIN_UP_TO:
                    chunk = self._join(chunk, chunks)
                size = len(chunk)
                self._buffered -= size
                self.bytes_received += size
                self._owner.body_consumed(self, size)
                return chunk
            if self._body_done:
                return None
            if self._body_gone:
                raise ConnectionResetError("the request is over: client gone or body abandoned")
            owner = self._owner
            waiter = owner.loop.create_future()
            self._body_waiter = waiter
            owner.body_wanted(self)
            timer = owner.loop.call_later(owner.state.settings.body_timeout, self.fail, 408)
            try:
                await waiter
            finally:
                self._body_waiter = None
                timer.cancel()

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
        self.bytes_received += len(data)
        self._owner.body_consumed(self, len(data))
        return data

    def _join(self, first: bytes, chunks: deque[bytes]) -> bytes:
        parts = [first]
        size = len(first)
        while chunks and size + len(chunks[0]) <= self.JOIN_UP_TO:
            part = chunks.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    # -- the response ----------------------------------------------------------------------

    async def send_interim(self, status: int, headers: Headers) -> None:
        if self._gone or self._response != _OPEN or not 100 <= status < 200:
            return  # interim responses only precede the final one
        self._owner.write_interim(self, status, headers)

    async def send_response(self, status: int, headers: Headers) -> None:
        if self._gone:
            return
        if self._response != _OPEN:
            raise RuntimeError("this request's response has already started")
        self._owner.write_head(self, status, headers)  # raises on a header it cannot send
        self._response = _STARTED
        self._no_body = self.request.method == b"HEAD" or status in _BODYLESS_STATUS

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        # flush is for stages that transform the body: bytes that reach here leave at once
        if self._gone or self._no_body or not data:
            return
        if self._response != _STARTED:
            raise RuntimeError("send_data outside a response")
        owner = self._owner
        rest: bytes | memoryview = data
        while True:
            taken = owner.write_body(self, rest)
            self.bytes_sent += taken
            # what is left of a large body goes on as a view: slices of it copy nothing
            rest = memoryview(rest)[taken:] if taken < len(rest) else b""
            if owner.must_wait(self, bool(rest)):
                await self._wait_sendable()
                if self._gone:
                    return
            elif not rest:
                return

    async def _wait_sendable(self) -> None:
        owner = self._owner
        waiter = owner.loop.create_future()
        self._send_waiter = waiter
        timer = owner.loop.call_later(owner.state.settings.send_timeout, self._send_timed_out)
        try:
            await waiter
        finally:
            timer.cancel()
            self._send_waiter = None

    def wake_sender(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _send_timed_out(self) -> None:
        log.warning("send timeout: the client stopped reading",
                    target=self.request.target.decode("latin-1"),
                    timeout=self._owner.state.settings.send_timeout)
        self.disconnect()
        self._owner.abort_stream(self)

    async def end(self) -> None:
        if self._gone or self._response == _ENDED:
            return
        if self._response != _STARTED:
            raise RuntimeError("end() before send_response()")
        self._response = _ENDED
        self._owner.state.requests_served += 1
        self._owner.write_end(self)
