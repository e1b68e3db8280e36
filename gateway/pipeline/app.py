"""The per-request pipeline, the same object for HTTP/1.1, HTTP/2 and HTTP/3:
routing → static file | PHP script | redirect | error, then the access log."""

from __future__ import annotations

import time
from urllib.parse import quote

import structlog

from gateway.config import Config
from gateway.php.cgi import Script
from gateway.php.pool import PhpPool
from gateway.pipeline.context import RequestContext
from gateway.pipeline.php_stage import PhpStage, PhpStageOptions
from gateway.pipeline.responses import respond
from gateway.pipeline.routing import PhpScript, Redirect, Router, StaticFile
from gateway.pipeline.static import StaticFiles

access_log = structlog.get_logger("gateway.access")

_REASONS = {403: b"Forbidden\n", 404: b"Not Found\n", 405: b"Method Not Allowed\n"}


class Pipeline:
    def __init__(self, config: Config, pool: PhpPool) -> None:
        self.config = config
        self.router = Router.from_config(config)
        self.static = StaticFiles(config.static_cache_ttl)
        self.php = PhpStage(
            pool,
            PhpStageOptions(request_timeout=config.request_timeout,
                            sse_timeout=config.sse_timeout),
        )
        self.access_log = config.access_log

    async def __call__(self, ctx: RequestContext) -> None:
        started = time.perf_counter() if self.access_log else 0.0
        route = self.router.resolve(ctx.request.target)
        status: int
        if isinstance(route, PhpScript):
            script = Script(route.script_filename, route.script_name, route.path_info)
            status = await self.php(ctx, script, route.document_root)
        elif isinstance(route, StaticFile):
            response = await self.static.prepare(ctx.request, route)
            status = response.status
            await self.static.send(ctx, response)
        elif isinstance(route, Redirect):
            location = quote(route.location, safe="/%:@!$&'()*+,;=-._~?")
            status = await respond(ctx, route.status, b"",
                                   [(b"location", location.encode("ascii"))])
        else:
            status = await respond(ctx, route.status, _REASONS.get(route.status, b""))
        if self.access_log:
            self._log(ctx, status, started)

    def _log(self, ctx: RequestContext, status: int, started: float) -> None:
        req = ctx.request
        access_log.info(
            "request",
            method=req.method.decode("latin-1"),
            uri=req.target.decode("latin-1"),
            protocol=f"HTTP/{req.http_version}",
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            client=ctx.client[0],
        )

