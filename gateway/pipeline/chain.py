"""Composes the pipeline: the middleware chain around the endpoint, in one fixed order.

Outermost first, each seeing what the ones after it answer:

1. access log        every answer with its status and the bytes sent (ACCESS_LOG)
2. endpoint          router -> static file | PHP | redirect | error status

Every request passes the same chain, over HTTP/1.1, HTTP/2 and HTTP/3, and so do the
answers the server makes itself (ctx.error_status set): a request that could not be parsed,
a timeout, the fallback 500 when the app failed.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.php.pool import PhpPool
from gateway.pipeline.access_log import access_log
from gateway.pipeline.context import App, Middleware
from gateway.pipeline.endpoint import Endpoint


def middleware_for(config: Config) -> list[Middleware]:
    """The enabled middleware, outermost first."""
    chain: list[Middleware] = []
    if config.access_log:
        chain.append(access_log)
    return chain


def compose(middleware: list[Middleware], endpoint: App) -> App:
    app = endpoint
    for wrap in reversed(middleware):
        app = wrap(app)
    return app


def build_app(config: Config, pool: PhpPool) -> App:
    return compose(middleware_for(config), Endpoint(config, pool))
