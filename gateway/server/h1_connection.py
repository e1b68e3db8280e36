"""HTTP/1.1 over an asyncio transport: drives the sans-IO Http1Adapter, one RequestStream per
request (gateway/server/stream.py), backpressure both ways and a timeout for every phase
between requests. A request the adapter refuses is answered by a stream too, so the chain
sees it; gateway/server/dispatch.py hands the connection over to HTTP/2 when asked."""

from __future__ import annotations

import _socket
import asyncio
import os
import socket
from typing import Final, cast

from gateway.pipeline.file_body import FileBytes
from gateway.protocol.events import Body, EndBody, Headers, ProtocolError, Request
from gateway.protocol.http1 import Http1Adapter, SwitchToH2, Wait
from gateway.server.state import (
    BODY_HIGH_WATER,
    LINGER_SECONDS,
    READ_HIGH_WATER,
    ServerState,
    close_transport,
)
from gateway.server.stream import RequestStream

_NO_TIMER, _HEAD_TIMER, _IDLE_TIMER, _LINGER_TIMER = range(4)
_TIMER_SLACK: Final = 0.005  # seconds: a timeout this close to its deadline is due
_EMPTY: Final = b""
_JOIN_UP_TO: Final = 8192  # a head and a body up to this size are joined into one write
# a file body from this size on goes by sendfile(2) (plain TCP); below, one write of head and
# body costs fewer system calls than a write, a fstat and a sendfile
_SENDFILE_FROM: Final = 16 * 1024


def _send_more(family: int, fd: int, data: bytes) -> int:
    """send(fd, data, MSG_MORE): the bytes taken, 0 if none (full, or failed: the transport's
    next write finds out). Through a socket object of the C type (no Python __init__),
    detached after, as the transport owns the descriptor."""
    try:
        sock = _socket.socket(family, socket.SOCK_STREAM, 0, fd)
    except OSError:
        return 0
    try:
        return sock.send(data, socket.MSG_MORE)
    except OSError:
        return 0
    finally:
        sock.detach()


class H1Connection(asyncio.Protocol):
    """One HTTP/1.x connection (cleartext or TLS); the StreamOwner of its requests."""

    def __init__(self, state: ServerState, tls: bool) -> None:
        settings = state.settings
        self.state = state
        self.loop = state.loop
        self.tls = tls
        self.conn = Http1Adapter(
            parser=settings.http1_parser,
            defaults=state.defaults,
            scheme="https" if tls else "http",
            max_request_line=settings.max_request_line,
            max_header_bytes=settings.max_header_bytes,
            max_body_bytes=settings.body_limit,
            allow_h2=not tls,  # TLS picks HTTP/2 by ALPN only
        )
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        self._socket_fd = -1  # the transport's socket, for sendfile: plain TCP only
        self._socket_family = socket.AF_INET
        self._stream: RequestStream | None = None  # the request whose response is not done
        self._body_blocked = False
        self._write_paused = False
        self._read_paused = False
        # one timer handle for the phase timeouts, moved lazily: `_deadline` is when the
        # current phase (`_timer_kind`) times out, `_timer_at` when the handle fires. A phase
        # is cancelled by setting `_timer_kind = _NO_TIMER`: the handle stays and finds
        # nothing to do when it fires, cheaper than a cancel and a new handle per request
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = _NO_TIMER
        self._deadline = 0.0
        self._timer_at = 0.0
        self._pending: list[bytes] = []
        self._flush_queued = False  # in the state's list of connections to flush
        self._closing = False
        self._refused = False  # the adapter refused a request: close after the answer, lingering
        self._registered = False

    # -- transport callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if isinstance(local, tuple):
            self.server = (str(local[0]), int(local[1]))
        if not self.tls:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                self._socket_family = sock.family
                self._socket_fd = sock.fileno()
        if not self.state.opened(self):
            transport.close()  # MAX_CONNECTIONS
            self._closing = True
            return
        self._registered = True
        if self.state.draining:
            self._close(linger=False)
            return
        self._arm(_HEAD_TIMER)  # the first request must arrive in time (slowloris)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering close: discard
        self.conn.receive_data(data)
        if self._timer_kind == _IDLE_TIMER:
            # the idle phase is over; _process arms header_timeout if the head is still partial
            self._timer_kind = _NO_TIMER
        self._process()

    def eof_received(self) -> bool | None:
        return None  # like nginx: a half-close means the client is gone; close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timers()
        stream = self._stream
        self._stream = None
        if stream is not None:
            stream.disconnect()
        if self._registered:
            self._registered = False
            self.state.closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stream is not None:
            self._stream.wake_sender()

    # -- reading -------------------------------------------------------------------------------

    def _process(self) -> None:
        if self._closing:
            return  # e.g. a pipelined request scheduled before the connection went away
        conn = self.conn
        while not self._body_blocked:
            event = conn.next_event()
            kind = type(event)
            if kind is Body:
                assert isinstance(event, Body)
                stream = self._stream
                if stream is not None:
                    stream.feed(event.data)
                    if stream.buffered >= BODY_HIGH_WATER:
                        self._body_blocked = True
            elif kind is Request:
                assert isinstance(event, Request)
                self._start(event, None)
                if not event.has_body and conn.skip_empty_body():
                    break  # the stream knows there is no body: no EndBody, then PAUSED
            elif kind is EndBody:
                if self._stream is not None:
                    self._stream.end_body()
            elif event is Wait.NEED_DATA:
                if conn.awaiting_head and conn.buffered and self._timer_kind != _HEAD_TIMER:
                    self._arm(_HEAD_TIMER)
                break
            elif event is Wait.PAUSED:
                break
            elif kind is ProtocolError:
                assert isinstance(event, ProtocolError)
                self._refuse(event.status, event.request)
                return
            else:
                assert isinstance(event, SwitchToH2)
                from gateway.server.dispatch import switch_to_h2

                self._closing = True  # the transport now belongs to an H2Connection
                self._registered = False
                self._cancel_timers()
                switch_to_h2(self, event)
                return
        transport = self.transport
        if transport is None:
            return
        if conn.buffered > READ_HIGH_WATER:
            if not self._read_paused:
                self._read_paused = True
                transport.pause_reading()
        elif self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _start(self, request: Request, error_status: int | None) -> None:
        self._timer_kind = _NO_TIMER  # no phase timeout while the request runs
        stream = RequestStream(self, request, self.client, self.server, self.tls, error_status)
        self._stream = stream
        stream.start()

    def _refuse(self, status: int, known: Request | None = None) -> None:
        """The adapter refused the request (malformed, too large, too slow): answer through a
        stream, then close. A request already running is failed with that status instead."""
        self._body_blocked = True  # nothing more is parsed on this connection
        self._refused = True
        stream = self._stream
        if stream is not None:
            stream.fail(status)
        else:
            self._start(known or Request(1, b"", b"", [], "1.1", has_body=False), status)

    # -- StreamOwner (gateway/server/stream.py) ------------------------------------------------

    def write_head(self, stream: RequestStream, status: int, headers: Headers) -> None:
        if stream is self._stream:
            if stream.error_status is not None:
                # as nginx: an answer the server makes itself closes the connection, whose
                # state (an unread or malformed body) cannot be trusted
                self.conn.close_after_response()
            self._write_soon(self.conn.send_response(status, headers))

    def write_interim(self, stream: RequestStream, status: int, headers: Headers) -> None:
        interim = self.conn.send_interim(status, headers) if stream is self._stream else b""
        if interim:
            self._write_soon(interim)

    def write_body(self, stream: RequestStream, data: bytes | memoryview) -> int:
        if stream is self._stream:
            out = self.conn.send_data(data)  # type: ignore[arg-type]  # takes all: no view
            if out is data and type(data) is FileBytes and self._socket_fd >= 0 \
                    and len(data) >= _SENDFILE_FROM:
                self._send_file(data)  # unframed (content-length): the kernel copies the file
            elif out:
                self._write_now(out)
        return len(data)

    def must_wait(self, stream: RequestStream, more: bool) -> bool:
        return self._write_paused and not self._closing

    def write_end(self, stream: RequestStream) -> None:
        if stream is not self._stream:
            return
        last = self.conn.send_end()  # b"" but for a chunked body's last chunk
        if last or self._pending:
            self._write_now(last)
        self._stream = None
        stream.close_body()  # the connection moves on: unread body is dropped or the socket closes
        conn = self.conn
        unread = conn.reading_body or conn.buffered > 0
        if not conn.start_next_cycle():
            self._close(linger=unread or self._refused)
            return
        self._body_blocked = False
        if conn.buffered:
            self._arm(_HEAD_TIMER)
            # a pipelined request starts from a clean callback, not inside this app task
            self.loop.call_soon(self._process, context=self.state.context)
        else:
            self._arm(_IDLE_TIMER)
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()

    def abort_stream(self, stream: RequestStream) -> None:
        if stream is self._stream:
            self.abort()  # part of a response is out: only closing tells the client

    def body_consumed(self, stream: RequestStream, size: int) -> None:
        if self._body_blocked and stream is self._stream and stream.buffered < BODY_HIGH_WATER \
                and not self._closing and not self.conn.awaiting_head:
            self._body_blocked = False
            self._process()

    def body_wanted(self, stream: RequestStream) -> None:
        if stream is not self._stream:
            return
        interim = self.conn.continue_response()
        if interim:
            self._write_now(interim)
        if self._body_blocked and stream.buffered < BODY_HIGH_WATER and not self._closing:
            self._body_blocked = False
            self._process()

    def stream_over(self, stream: RequestStream) -> None:
        pass  # HTTP/1 moves on when the response ends (write_end), not when the app does

    # -- writing -------------------------------------------------------------------------------

    def _write_soon(self, data: bytes) -> None:
        """Queue bytes; they leave with the next _write_now or at the end of this loop pass."""
        self._pending.append(data)
        if not self._flush_queued:
            self._flush_queued = True
            self.state.flush_soon(self)

    def _write_now(self, data: bytes) -> None:
        pending = self._pending
        if pending:
            pending.append(data)
            if len(data) > _JOIN_UP_TO and self.transport is not None and not self._closing:
                self.transport.writelines(pending)  # one writev, no copy of a large body
                pending.clear()
                return
            data = _EMPTY.join(pending)
            pending.clear()
        if data and self.transport is not None and not self._closing:
            self.transport.write(data)

    def _send_file(self, body: FileBytes) -> None:
        """A static file's bytes by sendfile(2) from its open descriptor, once everything
        written before has left: the head with MSG_MORE, so that it leaves with the file's
        first bytes (one transmission, as the single write of head and body was), then the
        file straight onto the socket; what the kernel does not take now goes through the
        transport from the bytes in memory, so order, backpressure (pause_writing) and the
        send timeout stay the transport's. A file no longer the version the head describes
        is sent from memory."""
        transport = self.transport
        file = body.file
        if transport is None or self._closing or file is None or transport.is_closing() \
                or transport.get_write_buffer_size() or not file.current(self.loop.time()):
            self._write_now(body)
            return
        size = len(body)
        sent = 0
        fd = self._socket_fd
        pending = self._pending
        try:
            if pending:
                head = pending[0] if len(pending) == 1 else _EMPTY.join(pending)
                pending.clear()
                taken = _send_more(self._socket_family, fd, head)
                if taken < len(head):
                    transport.write(memoryview(head)[taken:])  # queued: so goes the body
                    transport.write(body)
                    return
            while sent < size:
                n = os.sendfile(fd, file.fd, body.offset + sent, size - sent)
                if not n:
                    break  # the file shrank meanwhile: the rest from memory
                sent += n
        except OSError:
            pass  # full (EAGAIN): the transport waits; gone: its write fails and closes
        if sent < size:
            transport.write(memoryview(body)[sent:] if sent else body)

    def flush(self) -> None:
        """The end of the loop pass in which bytes were queued (ServerState.flush_soon)."""
        self._flush_queued = False
        if self._pending:
            self._write_now(_EMPTY)

    # -- timeouts and closing ------------------------------------------------------------------

    def _arm(self, kind: int) -> None:
        settings = self.state.settings
        delay = settings.idle_timeout if kind == _IDLE_TIMER else (
            LINGER_SECONDS if kind == _LINGER_TIMER else settings.header_timeout
        )
        deadline = self.loop.time() + delay
        self._timer_kind = kind
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return  # it fires first and waits on for the rest: no new handle per request
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._timed_out)

    def _cancel_timers(self) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        self._timer_kind = _NO_TIMER
        # a flush still queued writes nothing: the connection is closing by now

    def _timed_out(self) -> None:
        self._timer = None
        kind = self._timer_kind
        if kind == _NO_TIMER:
            return
        deadline = self._deadline
        if deadline - self.loop.time() > _TIMER_SLACK:  # armed again since: wait the rest
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._timed_out)
            return
        self._timer_kind = _NO_TIMER
        if kind == _LINGER_TIMER:
            if self.transport is not None:
                close_transport(self.transport, self.loop)
            return
        if kind == _HEAD_TIMER and self.conn.buffered and self._stream is None:
            # part of a head came, too slowly: 408, then close
            self._refuse(408, self.conn.refuse_slow_head())
            return
        self._close(linger=False)

    def _close(self, linger: bool) -> None:
        """Close after what was written; with linger, half-close and read-and-discard
        for a moment so a client still sending does not get a reset instead of our reply."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timers()
        if self._pending and self.transport is not None:
            self.transport.write(_EMPTY.join(self._pending))
            self._pending.clear()
        transport = self.transport
        if transport is None:
            return
        if linger and transport.can_write_eof():
            transport.write_eof()
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
            self._arm(_LINGER_TIMER)
        else:
            close_transport(transport, self.loop)

    # -- drain ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.conn.shutdown()
        if self._stream is None and self.conn.idle and not self._closing:
            self._close(linger=False)

    def abort(self) -> None:
        stream = self._stream
        self._stream = None
        self._closing = True
        self._cancel_timers()
        if stream is not None:
            stream.disconnect()
        if self.transport is not None:
            self.transport.abort()
