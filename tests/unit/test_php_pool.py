"""The pool itself: failure containment, concurrency, overload, OPcache, INI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from php_harness import POOL_QUEUE, POOL_THREADS, REPO, php_request

from gateway.php.pool import Overloaded

Runner = Any


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fatal", "Call to undefined function undefined_function_xyz()"),
        ("exception", "Uncaught RuntimeException: boom"),
        ("memory", "Allowed memory size"),
        ("time", "Maximum execution time of 1 second exceeded"),
        ("parse", "syntax error"),
    ],
)
async def test_fatal_errors_answer_500_and_log(php: Runner, kind: str, message: str) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await php("fail.php", query=f"kind={kind}")
    assert r.status == 500
    assert b"not reached" not in r.body
    assert r.outcome.fatal
    assert any(message in entry["event"] for entry in logs), logs


async def test_exit_keeps_status_like_php_fpm(php: Runner) -> None:
    # exit(3) is the script's own ending, not an error: php-fpm answers what it sent (200);
    # the non-zero status is logged so it is not lost
    with structlog.testing.capture_logs() as logs:
        r = await php("fail.php", query="kind=exit")
    assert (r.status, r.body) == (200, b"bye")
    assert r.outcome.exit_status == 3
    assert not r.outcome.fatal
    assert [e.get("exit_status") for e in logs if "exited" in e["event"]] == [3], logs


async def test_exit_status_does_not_outlive_its_request(php: Runner) -> None:
    # every thread runs one exit(3) at once; the requests after it end with status 0
    runs = await asyncio.gather(*[php("sleep.php", query="s=0.2&exit=3")
                                  for _ in range(POOL_THREADS)])
    assert [r.outcome.exit_status for r in runs] == [3] * POOL_THREADS
    later = await asyncio.gather(*[php("sleep.php", query="s=0.2")
                                   for _ in range(POOL_THREADS)])
    assert [r.outcome.exit_status for r in later] == [0] * POOL_THREADS


async def test_fatal_after_output_keeps_status(php: Runner) -> None:
    r = await php("fail.php", query="kind=late_fatal")
    assert r.status == 200  # headers were already sent
    assert r.body == b"partial output"
    assert r.outcome.fatal


async def test_thousand_failures_leave_every_thread_serving(php: Runner, php_pool: Any) -> None:
    kinds = ["fatal", "exception", "exit", "parse"]
    before = php_pool.stats()
    for start in range(0, 1000, POOL_QUEUE):
        batch = [php("fail.php", query=f"kind={kinds[i % 4]}")
                 for i in range(start, start + POOL_QUEUE)]
        for r in await asyncio.gather(*batch):
            assert r.status in (200, 500)
    stats = php_pool.stats()
    assert stats.requests - before.requests == 1000
    assert stats.fatals - before.fatals == 750
    assert stats.threads_alive == stats.threads
    # and all four threads still run scripts, side by side
    t0 = time.monotonic()
    results = await asyncio.gather(*[php("sleep.php", query="s=0.5") for _ in range(POOL_THREADS)])
    assert [r.body for r in results] == [b"slept 0.5"] * POOL_THREADS
    assert time.monotonic() - t0 < 0.95


async def test_four_threads_run_four_sleeps_at_once(php: Runner) -> None:
    t0 = time.monotonic()
    results = await asyncio.gather(*[php("sleep.php", query="s=1") for _ in range(4)])
    elapsed = time.monotonic() - t0
    assert all(r.status == 200 and r.body == b"slept 1" for r in results)
    assert 0.95 < elapsed < 1.8, elapsed


async def test_full_queue_fails_at_once(php_pool: Any) -> None:
    calls = []

    def submit_sleeper() -> None:
        c = php_pool.submit(php_request("sleep.php", query="s=0.5"))
        c.end_body()
        calls.append(c)

    for _ in range(POOL_THREADS):
        submit_sleeper()
    while php_pool.stats().busy < POOL_THREADS:  # every thread has taken its request
        await asyncio.sleep(0.01)
    for _ in range(POOL_QUEUE):
        submit_sleeper()
    assert php_pool.stats().queued == POOL_QUEUE
    t0 = time.monotonic()
    with pytest.raises(Overloaded):
        php_pool.submit(php_request("hello.php"))
    assert time.monotonic() - t0 < 0.05
    assert php_pool.stats().rejected >= 1
    for c in calls:
        await c.wait_done()
    # capacity is back once they are done
    c = php_pool.submit(php_request("hello.php"))
    c.end_body()
    assert (await c.response())[0] == 200
    await c.wait_done()


async def test_interrupt_stops_a_busy_script(php_pool: Any) -> None:
    call = php_pool.submit(php_request("sleep.php", query="s=20"))
    call.end_body()
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    call.interrupt()
    outcome = await call.wait_done()
    assert outcome.timed_out
    assert time.monotonic() - t0 < 2


async def test_cancel_ends_a_streaming_script(php_pool: Any) -> None:
    call = php_pool.submit(php_request("stream.php", query="n=100&ms=50"))
    call.end_body()
    await call.response()
    await call.read()
    call.cancel()
    outcome = await asyncio.wait_for(call.wait_done(), 3)
    assert outcome.cancelled


@pytest.mark.parametrize("script", ["hello.php", "html.php"])
async def test_a_page_arrives_whole_with_its_head(php_pool: Any, script: str) -> None:
    """Under the bridge's 64 KiB batch, output_buffering's spills are gathered and the head
    comes with them, the response marked complete in the same batch: the PHP stage always
    sends such a page with a Content-Length (html.php: 24 KiB in six spills)."""
    for _ in range(50):  # the loop waking between events is what this rules out
        call = php_pool.submit(php_request(script, query="kb=24"))
        call.end_body()
        assert (await call.response())[0] == 200
        body = call.complete_body()
        assert body is not None and len(body) in (13, 24 * 1024)
        await call.wait_done()


async def test_output_past_the_batch_and_flush_stream(php_pool: Any) -> None:
    """A 1 MiB page written 8 KiB at a time comes in batches (half the pool's 64 KiB of
    response credit here), before PHP is done, as the credit lets it go on; flush() hands
    output over at once."""
    call = php_pool.submit(php_request("big.php", query="kb=1024"))
    call.end_body()
    await call.response()
    assert call.complete_body() is None  # PHP waits for credit: it cannot have finished
    first = await call.read_out()
    assert first is not None and len(first[0]) >= 32 * 1024 and not first[1]
    total = len(first[0])
    while (out := await call.read_out()) is not None:
        total += len(out[0])
    assert total == 1024 * 1024
    call = php_pool.submit(php_request("stream.php", query="n=3&ms=300"))
    call.end_body()
    await call.response()
    started = time.monotonic()
    out = await call.read_out()
    assert out is not None and out[0].startswith(b"line 0 ") and out[1]  # flushed
    assert time.monotonic() - started < 0.25  # not held until the next line 300 ms on
    while await call.read_out() is not None:
        pass


async def test_opcache_active_and_ini_loaded(php: Runner) -> None:
    await php("opcache.php")
    r = await php("opcache.php")
    d = json.loads(r.body)
    assert d["enabled"] is True
    assert d["cached"] >= 1
    assert d["sapi"] == "fpm-fcgi"
    assert d["zts"] is True
    assert d["version"].startswith("8.4.")
    assert d["ini_file"] == str(REPO / "gateway" / "php" / "php.ini")
    assert (d["ini"]["post_max_size"], d["ini"]["expose_php"]) == ("64M", "")  # PHP: 8M, On
    assert d["ini"]["date.timezone"] == "UTC"
    assert d["ini"]["max_execution_time"] == "30"  # an INI override from the pool options
    for ext in ["ctype", "curl", "dom", "exif", "fileinfo", "filter", "gd", "iconv", "intl",
                "mbstring", "mysqli", "openssl", "pdo_mysql", "pdo_pgsql", "pdo_sqlite",
                "sqlite3", "session", "SimpleXML", "sodium", "tokenizer", "xml", "xmlreader",
                "xmlwriter", "zip", "zlib", "bcmath", "Zend OPcache"]:
        assert ext in d["extensions"], ext


def test_jit_and_ini_overrides_in_a_fresh_process(tmp_path: Path) -> None:
    """A second configuration needs its own process: libphp starts once per process."""
    ini = tmp_path / "custom.ini"
    ini.write_text((REPO / "gateway" / "php" / "php.ini").read_text() + "\nprecision = 9\n")
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        sys.path.insert(0, %r)
        from php_harness import run_php, REPO
        from gateway.php.pool import PhpPool, PoolOptions
        pool = PhpPool(PoolOptions(threads=1, queue_capacity=2,
            ini_path=Path(%r),
            ini_set=(("opcache.jit", "tracing"), ("memory_limit", "77M"))))
        pool.start()
        async def main():
            r = await run_php(pool, "opcache.php")
            print(r.body.decode())
        asyncio.run(main())
        pool.stop()
        """
    ) % (str(REPO / "tests"), str(ini))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert d["jit"] is True
    assert d["enabled"] is True
    assert d["ini"]["memory_limit"] == "77M"
    assert (d["ini_file"], d["ini"]["precision"]) == (str(ini), "9")  # the configured php.ini


async def test_deadline_expires_a_slow_request(php_pool: Any) -> None:
    call = php_pool.submit(php_request("sleep.php", query="s=20", has_body=False), timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await call.response()
    assert 0.45 < time.monotonic() - t0 < 1.2
    outcome = await call.wait_done()
    assert outcome.timed_out


async def test_extended_deadline_lets_an_event_stream_run(php_pool: Any) -> None:
    call = php_pool.submit(php_request("stream.php", query="n=6&ms=100", has_body=False),
                           timeout=0.3)
    await call.response()
    call.extend(5.0)  # what the PHP stage does for text/event-stream (SSE_TIMEOUT)
    body = b""
    while data := await call.read():
        body += data
    assert body.count(b"\n") == 6
    assert not (await call.wait_done()).timed_out
