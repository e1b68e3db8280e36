"""A RequestContext with no connection behind it: the request and its body are given, what
the pipeline sends is recorded. For unit tests of middleware and pipeline stages."""

from __future__ import annotations

import asyncio
from collections import deque

from gateway.protocol.events import Headers, Request


class FakeContext:
    def __init__(self, method: bytes = b"GET", target: bytes = b"/",
                 headers: Headers | None = None, body: list[bytes] | None = None,
                 error_status: int | None = None, complete: bool = True) -> None:
        has_body = body is not None
        length = sum(map(len, body)) if body is not None else None
        self.request = Request(1, method, target, headers or [], "1.1",
                               content_length=length, has_body=has_body)
        self.client = ("192.0.2.7", 40000)
        self.server = ("127.0.0.1", 8080)
        self.tls = False
        self.disconnected = asyncio.Event()
        self.error_status = error_status
        self._body = deque(body or [])
        self._complete = complete  # False: the body is only available through receive()
        self.status = 0
        self.headers: Headers = []
        self.data: list[bytes] = []
        self.ended = False
        self.interims: list[tuple[int, Headers]] = []
        self.bytes_received = 0  # as a request stream counts them
        self.bytes_sent = 0

    @property
    def body(self) -> bytes:
        return b"".join(self.data)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    async def receive(self) -> bytes | None:
        await asyncio.sleep(0)
        chunk = self._body.popleft() if self._body else None
        self.bytes_received += len(chunk or b"")
        return chunk

    def take_complete_body(self) -> bytes | None:
        if not self._complete:
            return None
        data = b"".join(self._body)
        self._body.clear()
        self.bytes_received += len(data)
        return data

    async def send_interim(self, status: int, headers: Headers) -> None:
        assert self.status == 0, "interim response after the final one"
        self.interims.append((status, list(headers)))

    async def send_response(self, status: int, headers: Headers) -> None:
        assert self.status == 0, "response started twice"
        self.status, self.headers = status, list(headers)

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        assert self.status and not self.ended
        self.data.append(data)
        self.bytes_sent += len(data)

    async def end(self) -> None:
        assert self.status and not self.ended
        self.ended = True
