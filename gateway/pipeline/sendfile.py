"""X-Sendfile and X-Accel-Redirect: a PHP script names a file, the front end sends it.

PHP decides who may have a file (a paid download, a private upload) and answers with a header
instead of the bytes; the PHP thread is then free while the client takes the file at its own
pace, with Content-Type, ETag, Last-Modified, Range and conditional requests as a static file
gets them (gateway/pipeline/static.py). The PHP stage hands a response head here as soon as
it sees one (before PHP's body, which is never sent).

* `X-Sendfile: /abs/path` (Apache mod_xsendfile, Lighttpd): the path must resolve, symlinks
  followed, inside one of X_SENDFILE_ROOTS.
* `X-Accel-Redirect: /uri` (nginx): the URI, percent-decoded once, names a file under
  X_ACCEL_ROOT, as nginx's `internal` location would (`DIR` appends the URI to it, like
  `root`; `/prefix/=DIR` replaces the prefix, like `alias`). The router never serves that
  directory to clients, even inside the document root.

A path that leaves its root, a URI with dot segments or outside the prefix, or a header with
nothing configured for it is answered 500 and logged; a missing file is 404. Neither the
header nor the path ever reaches the client. The file's response keeps PHP's other headers
(Content-Disposition, Set-Cookie, Cache-Control...), not its framing or validators; PHP's
Content-Type wins unless it is text/html (PHP's default, which a script sending a file has
rarely meant), and no Cache-Control is added: a file that needs PHP's permission is not for
shared caches unless PHP says so. As nginx does, a POST that ends in a file is answered as
its GET would be.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote_to_bytes

import structlog

from gateway.config import AccelRoot
from gateway.pipeline.context import RequestContext
from gateway.pipeline.responses import respond_status
from gateway.pipeline.routing import StaticFile
from gateway.pipeline.static import StaticFiles
from gateway.protocol.events import Headers

log = structlog.get_logger("gateway.sendfile")

SENDFILE = b"x-sendfile"
ACCEL = b"x-accel-redirect"
FILE_FIELDS = frozenset({SENDFILE, ACCEL})  # either names a file to send instead
# PHP's headers that describe PHP's own body, or that the file's response sets itself
_NOT_KEPT = frozenset({
    SENDFILE, b"content-length", b"content-encoding", b"content-range", b"transfer-encoding",
    b"etag", b"last-modified", b"accept-ranges", b"content-type",
})
# the file's headers that go out; its Cache-Control does not (see the module docstring)
_FILE_HEADERS = frozenset({
    b"content-type", b"content-length", b"content-range", b"etag", b"last-modified",
    b"accept-ranges", b"content-encoding", b"vary", b"x-content-type-options", b"allow",
})


class Refused(Exception):
    """The header names something it may not: 500, logged with the reason."""


class Sendfile:
    def __init__(self, roots: tuple[Path, ...], accel: AccelRoot | None,
                 static: StaticFiles) -> None:
        self._roots = tuple(os.path.realpath(root) for root in roots)
        self._accel = accel
        self._accel_dir = os.path.realpath(accel.directory) if accel is not None else ""
        self._static = static

    async def send(self, ctx: RequestContext, headers: Headers) -> None:
        """Answers with the file PHP's headers name (HEAD: its headers only)."""
        try:
            path = self._target(headers)
        except Refused as exc:
            log.error("file named by PHP refused", reason=str(exc),
                      uri=ctx.request.target.decode("latin-1"))
            await respond_status(ctx, 500)
            return
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            await respond_status(ctx, 404)
            return
        request = ctx.request
        if request.method != b"HEAD":
            request = replace(request, method=b"GET")
        response = await self._static.prepare(
            request, StaticFile(Path(path), st.st_size, st.st_mtime_ns))
        if response.status >= 400:
            response.close()
            await respond_status(ctx, response.status)
            return
        response.headers = _merge(response.headers, headers)
        await self._static.send(ctx, response)

    def _target(self, headers: Headers) -> str:
        accel = sendfile = None
        for name, value in headers:
            if name == ACCEL:
                accel = value
            elif name == SENDFILE:
                sendfile = value
        if accel is not None:
            return self._accel_target(accel)
        assert sendfile is not None
        return self._sendfile_target(sendfile)

    def _sendfile_target(self, value: bytes) -> str:
        if not self._roots:
            raise Refused("X-Sendfile without X_SENDFILE_ROOTS")
        path = os.fsdecode(value.strip())
        if not path.startswith("/") or "\0" in path:
            raise Refused(f"X-Sendfile {path!r} is not an absolute path")
        real = os.path.realpath(path)
        if not any(_under(real, root) for root in self._roots):
            raise Refused(f"X-Sendfile {path!r} is outside X_SENDFILE_ROOTS")
        return real

    def _accel_target(self, value: bytes) -> str:
        accel = self._accel
        if accel is None:
            raise Refused("X-Accel-Redirect without X_ACCEL_ROOT")
        raw = value.strip().partition(b"?")[0]
        uri = os.fsdecode(unquote_to_bytes(raw))
        segments = uri.split("/")
        if not uri.startswith(accel.prefix) or "\0" in uri or "\\" in uri or any(
                seg in (".", "..") for seg in segments):
            raise Refused(f"X-Accel-Redirect {uri!r} is not a URI under {accel.prefix}")
        real = os.path.realpath(os.path.join(self._accel_dir, uri[len(accel.prefix):]))
        if not _under(real, self._accel_dir):
            raise Refused(f"X-Accel-Redirect {uri!r} leads outside X_ACCEL_ROOT")
        return real


def _under(real: str, root: str) -> bool:
    return real.startswith(root if root == "/" else root + "/")


def _merge(file_headers: Headers, php_headers: Headers) -> Headers:
    """The file's representation headers, then PHP's others (never the header itself)."""
    php_type = next((v for n, v in php_headers if n == b"content-type"), None)
    out: Headers = []
    for name, value in file_headers:
        if name not in _FILE_HEADERS:
            continue
        if name == b"content-type" and php_type is not None and \
                not php_type.lower().startswith(b"text/html"):
            value = php_type  # the script said what the bytes are
        out.append((name, value))
    have = {name for name, _ in out}
    for name, value in php_headers:
        if name in _NOT_KEPT or name.startswith(b"x-accel-") or name in have:
            continue
        out.append((name, value))
    return out
