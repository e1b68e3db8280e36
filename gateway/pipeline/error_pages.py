"""Error pages (ERROR_PAGES_DIR): an HTML page instead of the short plain text, for browsers.

A 4xx/5xx answer that has no body of its own becomes `{status}.html` from the directory, or
a small built-in page for a status it has no file for (or with no directory at all), when
the request's Accept lists text/html. "No body of its own" means one the server made itself
(error_status set, or sent through gateway/pipeline/responses.py: its text/plain
content-type object is the mark, since no PHP header can be that very object) or an empty
one (content-length 0, or ended before any byte, like PHP's 500 after a fatal error with
display_errors off). The status and the other headers are kept (Retry-After, Allow,
Set-Cookie ...); content-type, content-length and content-encoding describe the page.

Pages are read at start-up, and a thread re-reads the directory every POLL_SECS, so a
deploy that changes them needs no restart and no request ever waits on the disk.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Awaitable
from pathlib import Path

import structlog

from gateway.config import Config
from gateway.pipeline.context import App, ContextProxy, Middleware, RequestContext
from gateway.pipeline.responses import PLAIN
from gateway.protocol.events import Headers
from gateway.protocol.response_headers import REASONS

log = structlog.get_logger("gateway.error_pages")

HTML = b"text/html; charset=utf-8"
POLL_SECS = 2.0
MAX_PAGE_BYTES = 1024 * 1024  # a bigger file is skipped: every worker keeps all pages in memory
_REPLACED_FIELDS = frozenset({b"content-type", b"content-length", b"content-encoding"})


def builtin_page(status: int) -> bytes:
    reason = html.escape(REASONS.get(status, b"Error").decode("latin-1"))
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{status} {reason}</title>\n</head>\n"
        "<body style=\"font-family: system-ui, sans-serif; text-align: center; "
        "margin-top: 15vh; color: #333\">\n"
        f"<h1>{status}</h1>\n<p>{reason}</p>\n</body>\n</html>\n"
    ).encode()


class PageSet:
    """The pages by status: the directory's, else built-in ones."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._pages: dict[int, bytes] = {}
        self._builtin: dict[int, bytes] = {}
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._stop = threading.Event()
        if directory is not None:
            self.reload()

    def page(self, status: int) -> bytes:
        found = self._pages.get(status)
        if found is None:
            found = self._builtin.get(status)
            if found is None:
                found = self._builtin[status] = builtin_page(status)
        return found

    def reload(self) -> bool:
        """Re-reads the directory if a page was added, removed or changed; True if so."""
        assert self.directory is not None
        try:
            entries = [e for e in os.scandir(self.directory) if _status_of(e.name) is not None]
            signature = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                     for e in entries))
        except OSError as exc:
            log.warning("error pages directory unreadable", path=str(self.directory),
                        error=exc.strerror)
            return False
        if signature == self._signature:
            return False
        pages: dict[int, bytes] = {}
        for name, _, size in signature:
            status = _status_of(name)
            assert status is not None
            if size > MAX_PAGE_BYTES:
                log.warning("error page too large, skipped", file=name, size=size,
                            limit=MAX_PAGE_BYTES)
                continue
            try:
                pages[status] = (self.directory / name).read_bytes()
            except OSError as exc:
                log.warning("error page unreadable, skipped", file=name, error=exc.strerror)
        self._pages = pages  # one assignment: a request sees the old set or the new one
        self._signature = signature
        log.info("error pages loaded", path=str(self.directory), statuses=sorted(pages))
        return True

    def watch(self, interval: float = POLL_SECS) -> None:
        """Re-read the directory every `interval` seconds, on a daemon thread, until close()."""
        if self.directory is None:
            return

        def poll() -> None:
            while not self._stop.wait(interval):
                self.reload()

        threading.Thread(target=poll, name="error-pages", daemon=True).start()

    def close(self) -> None:
        self._stop.set()


def _status_of(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    if dot and ext == "html" and len(stem) == 3 and stem.isdigit() and 400 <= int(stem) <= 599:
        return int(stem)
    return None


def accepts_html(headers: Headers) -> bool:
    """The request's Accept lists text/html with a q above 0 (a browser's does)."""
    for name, value in headers:
        if name != b"accept":
            continue
        listed = _html_memo.get(value)
        if listed is None and value not in _html_memo:
            listed = _lists_html(value)
            if len(_html_memo) >= _MEMO_LIMIT:
                _html_memo.clear()  # endless distinct values get no cache, not a leak
            _html_memo[value] = listed
        if listed is not None:
            return listed
    return False


# every request asks, and clients send a few Accept values over and over
_html_memo: dict[bytes, bool | None] = {}
_MEMO_LIMIT = 512


def _lists_html(accept: bytes) -> bool | None:
    """Whether one Accept value accepts text/html (q above 0); None if it does not list it."""
    for item in accept.split(b","):
        media, _, params = item.partition(b";")
        if media.strip().lower() == b"text/html":
            return not _q_is_zero(params)
    return None


def _q_is_zero(params: bytes) -> bool:
    for param in params.split(b";"):
        key, _, value = param.partition(b"=")
        if key.strip().lower() == b"q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False
    return False


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _server_made(headers: Headers) -> bool:
    # `is`, not `==`: a PHP script's own text/plain body carries an equal but distinct value
    return any(name == b"content-type" and value is PLAIN for name, value in headers)


_PASS, _HELD, _REPLACED = range(3)


class _PageContext(ContextProxy):
    """Turns a bodiless 4xx/5xx answer into its page; anything else passes untouched."""

    __slots__ = ("held", "mode", "pages")

    def __init__(self, inner: RequestContext, pages: PageSet) -> None:
        ContextProxy.__init__(self, inner)
        self.pages = pages
        self.mode = _PASS
        self.held: tuple[int, Headers] | None = None

    def send_response(self, status: int, headers: Headers) -> Awaitable[None]:
        if 400 <= status <= 599:
            return self._error_response(status, headers)
        return self.inner.send_response(status, headers)  # no coroutine of ours: passed on

    async def _error_response(self, status: int, headers: Headers) -> None:
        length = _content_length(headers)
        if self.error_status is not None or length == 0 or _server_made(headers):
            await self._send_page(status, headers)
            return
        if length is None:  # a streamed answer: empty or not, the first chunk tells
            self.held = (status, headers)
            self.mode = _HELD
            return
        await self.inner.send_response(status, headers)

    def send_data(self, data: bytes, flush: bool = True) -> Awaitable[None]:
        if self.mode == _PASS:
            return self.inner.send_data(data, flush)
        return self._send_data(data, flush)

    async def _send_data(self, data: bytes, flush: bool) -> None:
        if self.mode == _REPLACED:
            return
        if self.mode == _HELD:
            if not data:
                return
            assert self.held is not None
            self.mode = _PASS
            await self.inner.send_response(*self.held)
        await self.inner.send_data(data, flush)

    def end(self) -> Awaitable[None]:
        if self.mode == _HELD:
            assert self.held is not None
            return self._send_page_and_end(*self.held)
        return self.inner.end()

    async def _send_page_and_end(self, status: int, headers: Headers) -> None:
        await self._send_page(status, headers)
        await self.inner.end()

    async def _send_page(self, status: int, headers: Headers) -> None:
        self.mode = _REPLACED
        page = self.pages.page(status)
        kept = [(name, value) for name, value in headers if name not in _REPLACED_FIELDS]
        await self.inner.send_response(
            status, [(b"content-type", HTML), (b"content-length", b"%d" % len(page)), *kept])
        await self.inner.send_data(page)


def serve_pages(pages: PageSet) -> Middleware:
    def wrap(app: App) -> App:
        def with_pages(ctx: RequestContext) -> Awaitable[None]:
            if ctx.request.method == b"HEAD" or not accepts_html(ctx.request.headers):
                return app(ctx)
            return app(_PageContext(ctx, pages))

        return with_pages

    return wrap


def error_pages(config: Config) -> Middleware:
    pages = PageSet(config.error_pages_dir)
    pages.watch()
    return serve_pages(pages)
