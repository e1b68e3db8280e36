"""Small complete responses the pipeline answers itself (errors, redirects, refusals)."""

from __future__ import annotations

import contextlib

from gateway.pipeline.context import RequestContext
from gateway.protocol.events import Headers
from gateway.protocol.response_headers import REASONS

PLAIN = b"text/plain; charset=utf-8"


def status_text(status: int) -> bytes:
    """The short plain-text body of an error answer, e.g. b"404 Not Found\\n"."""
    return b"%d %s\n" % (status, REASONS.get(status, b""))


async def respond(ctx: RequestContext, status: int, body: bytes,
                  extra: Headers | None = None) -> None:
    """Sends status, headers and body; a vanished client is not an error here."""
    headers: Headers = [(b"content-type", PLAIN), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    with contextlib.suppress(ConnectionError):
        await ctx.send_response(status, headers)
        if body:
            await ctx.send_data(body)
        await ctx.end()


async def respond_status(ctx: RequestContext, status: int, extra: Headers | None = None) -> None:
    """An error answer with its short plain-text body (error pages may replace it)."""
    await respond(ctx, status, status_text(status), extra)
