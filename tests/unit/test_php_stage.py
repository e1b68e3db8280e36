"""The PHP stage of the pipeline with a fake context and the real PHP pool: what reaches the
connection for a complete page, a streamed body, a failure, a timeout and HEAD."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fake_context import FakeContext
from php_harness import PHP_DIR

from gateway.php.cgi import Script
from gateway.pipeline.php_stage import PhpStage, PhpStageOptions

pytestmark = pytest.mark.asyncio


def script(name: str) -> Script:
    return Script(str(PHP_DIR / name), f"/{name}", "")


async def run(pool: Any, ctx: FakeContext, name: str, timeout: float = 30.0) -> FakeContext:
    stage = PhpStage(pool, PhpStageOptions(request_timeout=timeout))
    await stage(ctx, script(name), str(PHP_DIR))
    return ctx


async def test_a_finished_page_goes_out_with_its_length(php_pool: Any) -> None:
    ctx = await run(php_pool, FakeContext(target=b"/hello.php"), "hello.php")
    assert (ctx.status, ctx.body, ctx.ended) == (200, b"Hello, World!", True)
    # PHP is usually done when its head is seen; on a loaded machine the head can come
    # first, and then the body streams without a length
    assert ctx.header(b"content-length") in (b"13", None)
    if ctx.header(b"content-length") is None:
        assert ctx.data == [b"Hello, World!"]


async def test_a_body_that_is_still_arriving_is_pumped_into_php(php_pool: Any) -> None:
    parts = [b"a" * 10000, b"b" * 30000, b"c"]
    ctx = FakeContext(b"POST", b"/echo_input.php", body=parts, complete=False)
    await run(php_pool, ctx, "echo_input.php")
    assert ctx.status == 200
    assert json.loads(ctx.body) == {"length": 40001, "method": "POST",
                                    "sha256": hashlib.sha256(b"".join(parts)).hexdigest()}


async def test_a_fatal_error_is_an_empty_500(php_pool: Any) -> None:
    ctx = await run(php_pool, FakeContext(target=b"/fail.php?kind=fatal"), "fail.php")
    assert (ctx.status, ctx.body, ctx.ended) == (500, b"", True)


async def test_request_timeout_is_504(php_pool: Any) -> None:
    ctx = await run(php_pool, FakeContext(target=b"/sleep.php?s=3"), "sleep.php", timeout=0.3)
    assert ctx.status == 504 and ctx.body == b"The PHP script took too long.\n"


async def test_head_sends_headers_only(php_pool: Any) -> None:
    ctx = await run(php_pool, FakeContext(b"HEAD", b"/big.php?kb=64"), "big.php")
    assert (ctx.status, ctx.body, ctx.ended) == (200, b"", True)
    assert ctx.header(b"content-length") is None  # PHP's length is unknown without the body
