"""A RequestContext that records what the chain sends, for driving middleware without a
connection (the e2e tests cover the real ones)."""

from __future__ import annotations

import asyncio

from gateway.protocol.events import Headers, Request


def request(method: bytes = b"GET", target: bytes = b"/", headers: Headers | None = None
            ) -> Request:
    return Request(stream_id=1, method=method, target=target, http_version="1.1",
                   headers=headers or [], has_body=False)


class RecordingContext:
    def __init__(self, req: Request, client: tuple[str, int] = ("203.0.113.9", 40000),
                 tls: bool = False, error_status: int | None = None) -> None:
        self.request = req
        self.client = client
        self.server = ("127.0.0.1", 8080)
        self.tls = tls
        self.disconnected = asyncio.Event()
        self.error_status = error_status
        self.status = 0
        self.headers: Headers = []
        self.body = b""
        self.ended = False
        self.bytes_received = 0  # as a request stream counts them
        self.bytes_sent = 0

    async def receive(self) -> bytes | None:
        return None

    def take_complete_body(self) -> bytes | None:
        return b""

    async def send_response(self, status: int, headers: Headers) -> None:
        assert self.status == 0, "response started twice"
        self.status = status
        self.headers = list(headers)

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        assert self.status and not self.ended
        self.body += data
        self.bytes_sent += len(data)

    async def end(self) -> None:
        assert self.status and not self.ended
        self.ended = True

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name!r} sent {len(values)} times"
        return values[0] if values else None
