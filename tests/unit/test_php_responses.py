"""Responses out of the real pool: status, headers in order, bytes, streaming."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from php_harness import php_request

Runner = Any


async def test_hello_default_content_type(php: Runner) -> None:
    r = await php("hello.php")
    assert r.status == 200
    assert r.body == b"Hello, World!"
    assert r.header(b"content-type") == b"text/html; charset=UTF-8"
    assert r.header(b"x-powered-by") is None  # expose_php = Off in the shipped php.ini


async def test_status_from_http_response_code(php: Runner) -> None:
    r = await php("status.php", query="mode=code")
    assert (r.status, r.body) == (418, b"teapot")


async def test_status_from_header_line(php: Runner) -> None:
    r = await php("status.php", query="mode=line")
    assert (r.status, r.body) == (404, b"missing")


async def test_location_redirects(php: Runner) -> None:
    r = await php("status.php", query="mode=location")
    assert r.status == 302
    assert r.header(b"location") == b"/elsewhere"
    # POST + Location answers 302, as php-fpm does (PHP alone would pick 303 for HTTP/1.1)
    r = await php("status.php", b"", method="POST", query="mode=location")
    assert r.status == 302
    r = await php("status.php", query="mode=created")
    assert r.status == 201


async def test_headers_in_order_and_cookies_separate(php: Runner) -> None:
    r = await php("status.php", query="mode=cookies")
    assert r.status == 200
    assert r.all(b"set-cookie") == [b"a=1", b"b=2; path=/x; HttpOnly"]
    assert r.all(b"x-multi") == [b"one", b"two"]
    names = [k for k, _ in r.headers]
    assert names.index(b"x-order") < names.index(b"x-multi") < names.index(b"x-order-last")
    assert r.body == b"ok"


async def test_header_remove(php: Runner) -> None:
    r = await php("status.php", query="mode=remove")
    assert r.header(b"x-gone") is None
    assert r.body == b"r"


async def test_binary_body_is_byte_exact(php: Runner) -> None:
    r = await php("status.php", query="mode=binary")
    assert r.header(b"content-type") == b"application/octet-stream"
    assert r.body == bytes(range(256)) + b"\0\r\n\xff"


async def test_empty_body(php: Runner) -> None:
    r = await php("status.php", query="mode=empty")
    assert (r.status, r.body) == (200, b"")


async def test_head_sends_no_body(php: Runner) -> None:
    r = await php("hello.php", method="HEAD")
    assert r.status == 200
    assert r.header(b"content-type") == b"text/html; charset=UTF-8"
    assert r.body == b""


async def test_head_of_a_large_page_does_not_hold_the_thread(php_pool: Any) -> None:
    # PHP discards HEAD output itself (headers_only), so nobody has to read 8 MiB for it
    call = php_pool.submit(php_request("big.php", method="HEAD", query="kb=8192"))
    call.end_body()
    status, _ = await call.response()
    outcome = await asyncio.wait_for(call.wait_done(), 10)
    assert status == 200 and not outcome.fatal and not outcome.timed_out
    assert not await call.read()  # no body bytes ever came


async def test_large_body_through_small_credit(php: Runner) -> None:
    r = await php("big.php", query="kb=4096")
    block = bytes(range(256)) * 32
    assert len(r.body) == 4096 * 1024
    assert r.body == block * (4096 // 8)


async def test_output_streams_line_by_line(php_pool: Any) -> None:
    call = php_pool.submit(php_request("stream.php", query="n=5&ms=100"))
    call.end_body()
    assert (await call.response())[0] == 200
    arrivals = []
    start = time.monotonic()
    buf = b""
    while data := await call.read():
        buf += data
        arrivals.append((time.monotonic() - start, data.count(b"\n")))
    await call.wait_done()
    assert buf.count(b"\n") == 5
    # five separate arrivals spread over ~400 ms, not one lump at the end
    assert len(arrivals) >= 4
    assert arrivals[-1][0] - arrivals[0][0] > 0.3


async def test_slow_reader_holds_php_back(php_pool: Any) -> None:
    """With 64 KiB of credit, PHP cannot run ahead of a reader that stopped."""
    call = php_pool.submit(php_request("big.php", query="kb=8192"))
    call.end_body()
    await call.response()
    first = await call.read()
    await asyncio.sleep(0.3)  # reader stalls; PHP must be blocked in ub_write
    assert call.outcome is None, "the script finished although nobody read its output"
    assert len(call._chunks) * 8192 <= 128 * 1024
    total = len(first)
    while data := await call.read():
        total += len(data)
    await call.wait_done()
    assert total == 8192 * 1024


async def test_fastcgi_finish_request(php_pool: Any, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    call = php_pool.submit(php_request("finish.php", query=f"marker={marker}"))
    call.end_body()
    assert (await call.response())[0] == 200
    body = b""
    while data := await call.read():
        body += data
    assert body == b"sent early"
    assert not marker.exists(), "the response ended before the script did"
    await call.wait_done()
    assert marker.read_text() == "after finish"


async def test_request_body_reaches_php_as_it_arrives(php_pool: Any) -> None:
    """PHP reads php://input while the client is still sending."""
    import hashlib

    total = 3 * 1024 * 1024
    call = php_pool.submit(
        php_request("echo_input.php", method="PUT", content_length=total,
                    headers=[(b"content-type", b"application/octet-stream")])
    )
    digest = hashlib.sha256()
    piece = bytes(range(256)) * 256  # 64 KiB
    for _ in range(total // len(piece)):
        await call.write_body(piece)
        digest.update(piece)
    call.end_body()
    status, _ = await call.response()
    body = b""
    while data := await call.read():
        body += data
    import json

    d = json.loads(body)
    assert status == 200
    assert d == {"length": total, "sha256": digest.hexdigest(), "method": "PUT"}
