"""Rate limiting per client address (RATE_LIMIT, RATE_WINDOW, RATE_BURST), as a middleware.

GCRA, the algorithm behind nginx's `limit_req`: each client has a theoretical arrival time
(TAT); a request moves it one interval (RATE_WINDOW / RATE_LIMIT) later, and passes while
the TAT stays within RATE_BURST intervals of now. That is a bucket of RATE_BURST requests
refilling smoothly, with no window edge that lets twice the limit through. The state lives
in the table all worker processes share (rate_table.py).

A refused request is answered 429 by the server itself: it goes on down the chain with
`error_status` set, so error pages and the log see it while the router, PHP and the disk
never do. Answers the server makes for other reasons (error_status already set: a request
it could not parse, the fallback 500) are not counted again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass

from gateway.config import Config
from gateway.pipeline.context import App, ContextProxy, Middleware, RequestContext
from gateway.pipeline.rate_table import RateTable, client_key, table_for
from gateway.protocol.events import Headers

TOO_MANY_REQUESTS = 429
_SECOND = 1_000_000_000
_MAX_SPAN = 1 << 60  # ns (36 years): keeps every TAT inside the table's 63 bits


@dataclass(frozen=True, slots=True)
class RatePolicy:
    limit: int  # requests per window
    window: int  # seconds
    burst: int  # requests at once

    @property
    def interval_ns(self) -> int:
        return min(_MAX_SPAN, max(1, self.window * _SECOND // self.limit))

    @property
    def tolerance_ns(self) -> int:
        return min(_MAX_SPAN, self.burst * self.interval_ns)

    def headers(self, allowed: bool, tat: int, now: int) -> Headers:
        """RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers) and
        tokio_php's X-RateLimit-*, plus Retry-After when refused."""
        ahead = max(0, tat - now)
        reset = -(-ahead // _SECOND)
        remaining = (self.tolerance_ns - ahead) // self.interval_ns if allowed else 0
        fields: Headers = [
            (b"ratelimit-policy", b'"default";q=%d;w=%d' % (self.limit, self.window)),
            (b"ratelimit", b'"default";r=%d;t=%d' % (remaining, reset)),
            (b"x-ratelimit-limit", b"%d" % self.limit),
            (b"x-ratelimit-remaining", b"%d" % remaining),
            (b"x-ratelimit-reset", b"%d" % reset),
        ]
        if not allowed:
            passes_at = tat + self.interval_ns - self.tolerance_ns
            fields.append((b"retry-after", b"%d" % max(1, -(-(passes_at - now) // _SECOND))))
        return fields


class _Limited(ContextProxy):
    """Adds the rate-limit fields to the answer; a refused request carries error_status."""

    __slots__ = ("fields",)

    def __init__(self, inner: RequestContext, fields: Headers, refused: bool) -> None:
        ContextProxy.__init__(self, inner)
        self.fields = fields
        if refused:
            self.error_status = TOO_MANY_REQUESTS

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        return self.inner.send_response(status, [*headers, *self.fields])


def limit_requests(policy: RatePolicy, table: RateTable) -> Middleware:
    interval, tolerance = policy.interval_ns, policy.tolerance_ns

    def wrap(app: App) -> App:
        async def limited(ctx: RequestContext) -> None:
            if ctx.error_status is not None:
                await app(ctx)
                return
            try:
                key = client_key(ctx.client[0])
            except (OSError, ValueError):  # not an IP peer (a Unix socket): nothing to key
                await app(ctx)
                return
            now = time.monotonic_ns()
            allowed, tat = table.take(key, now, interval, tolerance)
            await app(_Limited(ctx, policy.headers(allowed, tat, now), not allowed))

        return limited

    return wrap


def rate_limit(config: Config) -> Middleware:
    policy = RatePolicy(config.rate_limit, config.rate_window, config.rate_burst)
    return limit_requests(policy, table_for(config.rate_limit_max_clients))
