"""Composes the pipeline: the middleware chain around the endpoint, in one fixed order.

Outermost first, each seeing what the ones after it answer:

1. proxies           the client behind a trusted proxy (TRUSTED_PROXIES): ctx.client, tls
2. observe           request ids and trace context, metrics, spans, the access log
                     (ACCESS_LOG) and Server-Timing: every answer, its status and bytes sent
3. rate limit        429 beyond RATE_LIMIT per client address, fields on every answer
4. error pages       an HTML page for a bodiless 4xx/5xx when the client accepts HTML
5. compression       zstd / br / gzip as the client accepts, streamed (COMPRESSION)
6. endpoint          router -> static file | PHP | redirect | error status

The proxies stage comes before the observer so that logs, metrics and spans name the client
PHP sees; it
answers nothing itself and cannot fail, so the log misses no answer for it. The rate
limiter answers 429 by passing the request on with error_status set: error pages and the
endpoint make the answer, the router and PHP never run. Compression is innermost so that
the stages outside it (error pages, the log's byte count) see what goes on the wire.

Every request passes the same chain, over HTTP/1.1, HTTP/2 and HTTP/3, and so do the
answers the server makes itself (ctx.error_status set): a request that could not be parsed,
a timeout, the fallback 500 when the app failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.pipeline.access_log import access_log
from gateway.pipeline.compression import compression
from gateway.pipeline.context import App, Middleware

if TYPE_CHECKING:
    from gateway.php.pool import PhpPool
from gateway.pipeline.error_pages import error_pages
from gateway.pipeline.proxies import trusted_proxies
from gateway.pipeline.rate_limit import rate_limit


def middleware_for(config: Config, observer: Middleware | None = None) -> list[Middleware]:
    """The enabled middleware, outermost first; `observer` is the worker's (metrics and
    spans need its objects), else the access log alone when ACCESS_LOG is on."""
    chain: list[Middleware] = []
    if config.trusted_proxies:
        chain.append(trusted_proxies(config))
    if observer is not None:
        chain.append(observer)
    elif config.access_log:
        chain.append(access_log)
    if config.rate_limit:
        chain.append(rate_limit(config))
    chain.append(error_pages(config))
    if config.compression:
        chain.append(compression(config))
    return chain


def compose(middleware: list[Middleware], endpoint: App) -> App:
    app = endpoint
    for wrap in reversed(middleware):
        app = wrap(app)
    return app


def build_app(config: Config, pool: PhpPool, observer: Middleware | None = None) -> App:
    from gateway.pipeline.endpoint import Endpoint  # needs the compiled bridge; compose does not

    return compose(middleware_for(config, observer), Endpoint(config, pool))
