"""The access log: one JSON line per answered request, written by the observing middleware
(gateway/pipeline/observe.py) when ACCESS_LOG is on, with the status and the body bytes
that actually left (nginx's $status and $body_bytes_sent), for every answer, including the
ones the server makes itself (parser errors, the fallback 500)."""

from __future__ import annotations

import structlog

from gateway.observability.request_record import RequestRecord
from gateway.pipeline.context import App, RequestContext

log = structlog.get_logger("gateway.access")

# nginx's code for a request the client abandoned before any answer
CLIENT_CLOSED = 499


def write_access_line(ctx: RequestContext, record: RequestRecord, status: int,
                      bytes_sent: int, seconds: float) -> None:
    req = ctx.request
    host = req.authority
    agent = referer = b""
    for name, value in req.headers:
        if name == b"host":
            host = host or value
        elif name == b"user-agent":
            agent = value
        elif name == b"referer":
            referer = value
    wait, run = record.php_wait, record.php_run
    log.info(
        "request",
        method=req.method.decode("latin-1"),
        uri=record.uri,
        protocol=f"HTTP/{req.http_version}",
        status=status,
        bytes_sent=bytes_sent,
        duration_ms=round(seconds * 1000, 3),
        client=ctx.client[0],
        host=host.decode("latin-1"),
        user_agent=agent.decode("latin-1"),
        referer=referer.decode("latin-1"),
        php_queue_ms=None if wait is None else round(wait * 1000, 3),
        php_ms=None if run is None else round(run * 1000, 3),
    )


def access_log(app: App) -> App:
    """The access log alone, without metrics or spans (the worker uses the full observer)."""
    from gateway.observability.tracing import Tracing
    from gateway.pipeline.observe import observe  # observe imports this module

    return observe(Tracing(), None, True, False)(app)
