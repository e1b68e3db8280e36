"""Error pages through the chain, driven with a recording context: which answers become a
page, what of them is kept, and how the page set follows its directory."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from recording_context import RecordingContext, request

from gateway.pipeline.context import RequestContext
from gateway.pipeline.error_pages import (
    HTML,
    PageSet,
    accepts_html,
    builtin_page,
    serve_pages,
)
from gateway.pipeline.responses import respond, respond_status

BROWSER = [(b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8")]
Endpoint = Callable[[RequestContext], Awaitable[None]]


@pytest.fixture
def pages_dir(tmp_path: Path) -> Path:
    (tmp_path / "404.html").write_bytes(b"<h1>custom 404</h1>")
    (tmp_path / "500.html").write_bytes(b"<h1>custom 500</h1>")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "200.html").write_text("not an error status: ignored")
    return tmp_path


async def run(endpoint: Endpoint, ctx: RecordingContext, pages: PageSet) -> RecordingContext:
    await serve_pages(pages)(endpoint)(ctx)
    assert ctx.ended
    return ctx


def php_answer(status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
               ) -> Endpoint:
    """What the PHP stage sends: a head with PHP's own (new) header values, then chunks."""
    async def endpoint(ctx: RequestContext) -> None:
        await ctx.send_response(status, [(n, bytes(bytearray(v))) for n, v in headers])
        for chunk in chunks:
            await ctx.send_data(chunk)
        await ctx.end()
    return endpoint


async def test_server_made_404_becomes_the_page(pages_dir: Path) -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond_status(ctx, 404, [(b"x-kept", b"1")])

    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert ctx.status == 404
    assert ctx.body == b"<h1>custom 404</h1>"
    assert ctx.header(b"content-type") == HTML == b"text/html; charset=utf-8"
    assert ctx.header(b"content-length") == b"%d" % len(ctx.body)
    assert ctx.header(b"x-kept") == b"1"


async def test_server_made_503_with_its_own_text_still_becomes_a_page(pages_dir: Path) -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond(ctx, 503, b"PHP workers are busy, retry shortly.\n",
                      [(b"retry-after", b"1")])

    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert ctx.status == 503 and ctx.body == builtin_page(503)
    assert ctx.header(b"retry-after") == b"1"
    assert ctx.header(b"content-length") == b"%d" % len(builtin_page(503))


async def test_plain_clients_keep_the_plain_text(pages_dir: Path) -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond_status(ctx, 404)

    for accept in ([], [(b"accept", b"*/*")], [(b"accept", b"text/html;q=0")]):
        ctx = await run(endpoint, RecordingContext(request(headers=accept)), PageSet(pages_dir))
        assert (ctx.status, ctx.body) == (404, b"404 Not Found\n")
        assert ctx.header(b"content-type") == b"text/plain; charset=utf-8"


async def test_php_text_plain_body_of_its_own_is_kept(pages_dir: Path) -> None:
    endpoint = php_answer(404, [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", b"14")], [b"404 Not Found\n"])
    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert (ctx.status, ctx.body) == (404, b"404 Not Found\n")
    assert ctx.header(b"content-type") == b"text/plain; charset=utf-8"


async def test_php_html_error_page_of_its_own_streams_through(pages_dir: Path) -> None:
    endpoint = php_answer(500, [(b"content-type", b"text/html")], [b"", b"<p>oops", b"</p>"])
    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert (ctx.status, ctx.body) == (500, b"<p>oops</p>")
    assert ctx.header(b"content-type") == b"text/html"


async def test_empty_php_500_becomes_the_page(pages_dir: Path) -> None:
    # the PHP stage's complete-body path: content-length 0 (a fatal with display_errors off)
    endpoint = php_answer(500, [(b"content-type", b"text/html; charset=UTF-8"),
                                (b"set-cookie", b"a=1"), (b"content-length", b"0")], [])
    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert (ctx.status, ctx.body) == (500, b"<h1>custom 500</h1>")
    assert ctx.header(b"set-cookie") == b"a=1"
    assert ctx.header(b"content-length") == b"19"


async def test_streamed_answer_that_ends_empty_becomes_the_page(pages_dir: Path) -> None:
    endpoint = php_answer(403, [(b"content-type", b"text/html"),
                                (b"content-encoding", b"gzip")], [b""])
    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert (ctx.status, ctx.body) == (403, builtin_page(403))
    assert ctx.header(b"content-encoding") is None
    assert ctx.header(b"content-type") == HTML


async def test_answers_the_server_makes_itself_become_pages(pages_dir: Path) -> None:
    async def endpoint(ctx: RequestContext) -> None:
        assert ctx.error_status is not None
        await respond_status(ctx, ctx.error_status)

    for status in (400, 408, 413, 414, 429, 431, 500):
        ctx = RecordingContext(request(headers=BROWSER), error_status=status)
        await run(endpoint, ctx, PageSet(pages_dir))
        expected = b"<h1>custom 500</h1>" if status == 500 else builtin_page(status)
        assert (ctx.status, ctx.body) == (status, expected)
        assert ctx.header(b"content-type") == HTML


async def test_successes_redirects_and_head_pass_untouched(pages_dir: Path) -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond(ctx, 302, b"", [(b"location", b"/x")])

    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(pages_dir))
    assert (ctx.status, ctx.body, ctx.header(b"location")) == (302, b"", b"/x")

    async def missing(ctx: RequestContext) -> None:
        await respond_status(ctx, 404)

    head = RecordingContext(request(method=b"HEAD", headers=BROWSER))
    await run(missing, head, PageSet(pages_dir))
    assert head.header(b"content-type") == b"text/plain; charset=utf-8"


async def test_builtin_pages_without_a_directory() -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond(ctx, 500, b"")

    ctx = await run(endpoint, RecordingContext(request(headers=BROWSER)), PageSet(None))
    assert ctx.status == 500 and ctx.body == builtin_page(500)
    assert b"<title>500 Internal Server Error</title>" in ctx.body
    assert builtin_page(599).startswith(b"<!doctype html>")


def test_pages_are_reread_when_they_change(pages_dir: Path) -> None:
    pages = PageSet(pages_dir)
    assert pages.page(404) == b"<h1>custom 404</h1>"
    assert pages.reload() is False  # nothing changed: nothing read
    page = pages_dir / "404.html"
    page.write_bytes(b"<h1>new 404</h1>")
    later = time.time() + 5
    os.utime(page, (later, later))
    (pages_dir / "429.html").write_bytes(b"slow down")
    (pages_dir / "500.html").unlink()
    assert pages.reload() is True
    assert pages.page(404) == b"<h1>new 404</h1>"
    assert pages.page(429) == b"slow down"
    assert pages.page(500) == builtin_page(500)


def test_watch_thread_picks_up_a_change(pages_dir: Path) -> None:
    pages = PageSet(pages_dir)
    pages.watch(interval=0.05)
    try:
        (pages_dir / "418.html").write_bytes(b"teapot page")
        deadline = time.monotonic() + 5
        while pages.page(418) != b"teapot page":
            assert time.monotonic() < deadline, "the watcher never re-read the directory"
            time.sleep(0.02)
    finally:
        pages.close()


@pytest.mark.parametrize(("accept", "expected"), [
    (b"text/html", True),
    (b"TEXT/HTML ; charset=utf-8", True),
    (b"application/json, text/html;q=0.1", True),
    (b"text/html;q=0", False),
    (b"text/html;q=0.0", False),
    (b"*/*", False),
    (b"text/*", False),
    (b"application/xhtml+xml", False),
])
def test_accepts_html(accept: bytes, expected: bool) -> None:
    assert accepts_html([(b"accept", accept)]) is expected
