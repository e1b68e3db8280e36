"""The end of the chain: answers a request from the router's decision (static file, PHP
script, redirect, 403/404/405) or, for a response the server makes itself, with its status."""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import quote

from gateway.config import Config
from gateway.php.cgi import Script
from gateway.php.pool import PhpPool
from gateway.pipeline.compressed_files import compressed_files
from gateway.pipeline.context import RequestContext
from gateway.pipeline.php_stage import PhpStage, PhpStageOptions
from gateway.pipeline.responses import respond, respond_status
from gateway.pipeline.routing import PhpScript, Redirect, Router, StaticFile
from gateway.pipeline.sendfile import Sendfile
from gateway.pipeline.spool import MemoryBudget
from gateway.pipeline.static import StaticFiles

_tuple_new = tuple.__new__
# nginx answers TRACE with 405 and never passes it on; so does php-gateway
_REFUSED_METHODS = frozenset({b"TRACE"})
_ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"  # what PHP is given


class Endpoint:
    def __init__(self, config: Config, pool: PhpPool) -> None:
        self.router = Router.from_config(config)
        self.static = StaticFiles(config.static_cache_ttl,
                                  compressed=compressed_files(config))
        self.php = PhpStage(
            pool,
            PhpStageOptions(request_timeout=config.request_timeout,
                            sse_timeout=config.sse_timeout,
                            server_name=config.server_name.encode() if config.server_name
                            else None,
                            request_buffering=config.request_buffering,
                            response_buffering=config.response_buffering),
            MemoryBudget(config.buffer_memory),
            Sendfile(config.x_sendfile_roots, config.x_accel_root, self.static),
        )

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        # hands back the answering stage's awaitable: no coroutine of its own to pass through
        if ctx.error_status is not None:
            return respond_status(ctx, ctx.error_status)
        if ctx.request.method in _REFUSED_METHODS:
            return respond_status(ctx, 405, [(b"allow", _ALLOWED_METHODS)])
        route = self.router.resolve(ctx.request.target)
        if isinstance(route, PhpScript):
            # tuple.__new__ straight: calling a NamedTuple class runs its Python __new__ too
            script = _tuple_new(Script, (route.script_filename, route.script_name,
                                         route.path_info, route.worker))
            return self.php(ctx, script, route.document_root)
        if isinstance(route, StaticFile):
            return self._static(ctx, route)
        if isinstance(route, Redirect):
            location = quote(route.location, safe="/%:@!$&'()*+,;=-._~?")
            return respond(ctx, route.status, b"", [(b"location", location.encode("ascii"))])
        return respond_status(ctx, route.status)

    async def _static(self, ctx: RequestContext, route: StaticFile) -> None:
        response = await self.static.prepare(ctx.request, route)
        await self.static.send(ctx, response)
