"""Worker mode through the real pool: tests/php/worker.php boots once on the session pool's
worker thread and takes every `worker=True` request. What must persist (statics, globals)
persists; what belongs to one request (superglobals, headers, status, cookies, session,
output buffers, uploads, errors) does not reach the next; failures restart the script."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import structlog
from php_harness import PhpResult, php_request, run_php

Pool = Any


async def worker(pool: Pool, query: str, body: bytes | None = None, **kw: Any) -> PhpResult:
    return await run_php(pool, "worker.php", body, worker=True, query=query, **kw)


async def state(pool: Pool) -> dict[str, Any]:
    r = await worker(pool, "case=state")
    assert r.status == 200, r
    return dict(json.loads(r.body))


async def snapshot(pool: Pool, query: str = "", body: bytes | None = None,
                   **kw: Any) -> dict[str, Any]:
    r = await worker(pool, "case=globals" + (f"&{query}" if query else ""), body, **kw)
    assert r.status == 200, r
    return dict(json.loads(r.body))


def multipart(name: str, filename: str, content: bytes) -> tuple[bytes, bytes]:
    boundary = b"----pg" + os.urandom(8).hex().encode()
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name.encode()
            + b"\"; filename=\"" + filename.encode() + b"\"\r\nContent-Type: text/plain\r\n\r\n"
            + content + b"\r\n--" + boundary + b"--\r\n")
    return body, b"multipart/form-data; boundary=" + boundary


async def test_statics_and_boot_persist_across_requests(php_pool: Pool) -> None:
    first = await state(php_pool)
    second = await state(php_pool)
    assert second["boot"] == first["boot"]
    assert second["count"] == first["count"] + 1
    # before its first request the script sees itself, as Symfony Runtime needs
    assert first["boot_server"]["SCRIPT_FILENAME"].endswith("/tests/php/worker.php")
    assert first["boot_server"]["FRANKENPHP_WORKER"] == "1"
    assert first["boot_server"]["REQUEST_METHOD"] is None


async def test_superglobals_are_the_requests_own(php_pool: Pool) -> None:
    full = await snapshot(
        php_pool, "a=1&tag=first", b"p=2",
        method="POST",
        headers=[(b"content-type", b"application/x-www-form-urlencoded"),
                 (b"cookie", b"c=3"), (b"x-secret", b"one")])
    assert full["get"] == {"case": "globals", "a": "1", "tag": "first"}
    assert full["post"] == {"p": "2"}
    assert full["cookie"] == {"c": "3"}
    assert full["request"] == {"case": "globals", "a": "1", "tag": "first", "p": "2"}
    assert full["server"]["HTTP_X_SECRET"] == "one"
    assert full["server"]["REQUEST_METHOD"] == "POST"
    assert full["server"]["FRANKENPHP_WORKER"] == "1"
    assert full["input"] == "p=2"
    assert full["filter"] == "first"

    bare = await snapshot(php_pool, "tag=second")
    assert bare["get"] == {"case": "globals", "tag": "second"}
    assert (bare["post"], bare["cookie"], bare["files"]) == ([], [], [])
    assert bare["request"] == {"case": "globals", "tag": "second"}
    assert "HTTP_X_SECRET" not in bare["server"]
    assert bare["server"]["REQUEST_METHOD"] == "GET"
    assert bare["input"] == ""
    assert bare["filter"] == "second"  # filter_input() follows the request too


async def test_a_dirty_request_leaves_nothing_behind(php_pool: Pool) -> None:
    clean = await snapshot(php_pool)
    dirty = await worker(php_pool, "case=dirty&secret=s3cr3t")
    assert dirty.status == 201
    assert dirty.header(b"x-leak") == b"1"
    assert any(v.startswith(b"leak=1") for v in dirty.all(b"set-cookie"))
    assert dirty.body == b"dirty"  # the buffer it left open was flushed to it

    after = await snapshot(php_pool)
    assert after["status"] == 200
    assert after["session"] is None
    assert after["ob_level"] == clean["ob_level"]
    assert "added" not in after["get"]
    assert not any(h.startswith("X-Leak") for h in after["headers"])
    r = await worker(php_pool, "case=state")
    assert r.header(b"x-leak") is None and r.all(b"set-cookie") == []
    # globals are the application's memory: they persist, by design
    exists = json.loads((await worker(php_pool, "case=exists")).body)
    assert exists["global"] == "s3cr3t"


async def test_uploads_are_removed_after_their_request(php_pool: Pool) -> None:
    body, ctype = multipart("file", "a.txt", b"uploaded bytes")
    r = await worker(php_pool, "case=upload", body, method="POST",
                     headers=[(b"content-type", ctype)])
    got = json.loads(r.body)
    assert (got["size"], got["content"]) == (14, "uploaded bytes")
    later = json.loads((await worker(php_pool, f"case=exists&path={got['tmp_name']}")).body)
    assert later["exists"] is False
    assert (await snapshot(php_pool))["files"] == []


async def test_uncaught_exception_is_500_and_the_script_goes_on(php_pool: Pool) -> None:
    before = await state(php_pool)
    with structlog.testing.capture_logs() as logs:
        r = await worker(php_pool, "case=throw")
    assert r.status == 500
    assert r.outcome.fatal
    assert any("Uncaught RuntimeException: boom from the handler" in e["event"] for e in logs)
    after = await state(php_pool)
    assert after["boot"] == before["boot"]
    assert (await snapshot(php_pool))["last_error"] is None


@pytest.mark.parametrize("case", ["memory", "compile"])
async def test_fatal_error_is_500_and_restarts_the_script(php_pool: Pool, case: str) -> None:
    before = await state(php_pool)
    restarts = php_pool.stats().worker_restarts
    r = await worker(php_pool, f"case={case}")
    assert r.status == 500
    assert r.outcome.fatal
    after = await state(php_pool)
    assert after["boot"] != before["boot"]
    assert after["count"] == 1
    assert php_pool.stats().worker_restarts == restarts + 1
    # the memory limit the request raised or hit is the INI's again
    assert (await snapshot(php_pool))["status"] == 200


async def test_exit_keeps_the_response_and_restarts_the_script(php_pool: Pool) -> None:
    before = await state(php_pool)
    r = await worker(php_pool, "case=exit")
    assert (r.status, r.header(b"location"), r.body) == (302, b"/elsewhere", b"bye")
    assert (await state(php_pool))["boot"] != before["boot"]


async def test_max_execution_time_is_armed_again_for_each_request(php_pool: Pool) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await worker(php_pool, "case=spin&limit=1&s=3")
    assert r.status == 500
    assert any("Maximum execution time of 1 second" in e["event"] for e in logs)
    # set_time_limit(1) died with that request: the next gets max_execution_time (30 s)
    r = await worker(php_pool, "case=spin&s=1.3")
    assert (r.status, r.body) == (200, b"spun")


async def test_request_timeout_interrupts_the_handler(php_pool: Pool) -> None:
    before = await state(php_pool)
    call = php_pool.submit(php_request("worker.php", query="case=sleep&ms=5000", worker=True),
                           timeout=0.3)
    with pytest.raises(TimeoutError):
        await call.response()
    call.interrupt()
    outcome = await asyncio.wait_for(call.wait_done(), 5)
    assert outcome.timed_out
    assert (await state(php_pool))["boot"] != before["boot"]


async def test_requests_queue_for_the_worker_and_are_served_in_turn(php_pool: Pool) -> None:
    results = await asyncio.gather(
        *[worker(php_pool, f"case=sleep&ms=50&tag={i}") for i in range(5)])
    assert sorted(r.body for r in results) == [f"slept {i}".encode() for i in range(5)]


async def test_finish_request_and_nested_calls(php_pool: Pool) -> None:
    r = await worker(php_pool, "case=finish")
    assert (r.status, r.body) == (200, b"sent")
    r = await worker(php_pool, "case=nested")
    assert r.body == b"gateway_handle_request() called from inside a request's handler"


async def test_a_classic_thread_refuses_to_loop(php_pool: Pool) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await run_php(php_pool, "worker.php", query="case=state")
    assert r.status == 500
    assert any("needs worker mode" in e["event"] for e in logs), logs
