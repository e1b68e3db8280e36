"""Small complete responses the pipeline answers itself (errors, redirects, refusals)."""

from __future__ import annotations

import contextlib

from gateway.pipeline.context import RequestContext
from gateway.protocol.events import Headers

PLAIN = b"text/plain; charset=utf-8"


async def respond(ctx: RequestContext, status: int, body: bytes,
                  extra: Headers | None = None) -> int:
    """Sends status, headers and body; a vanished client is not an error here."""
    headers: Headers = [(b"content-type", PLAIN), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    with contextlib.suppress(ConnectionError):
        await ctx.send_response(status, headers)
        if body and ctx.request.method != b"HEAD":
            await ctx.send_data(body)
        await ctx.end()
    return status
