"""Bridge limits that need a pool of their own (libphp starts once per process, so each runs
in a fresh interpreter): pg_stop's grace before it interrupts what still runs, and the bound
on PHP log lines waiting for the event loop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from php_harness import REPO

PRELUDE = """
import asyncio, json, sys, time
sys.path.insert(0, {tests!r})
from php_harness import run_php, php_request, REPO
from gateway.php.pool import PhpPool, PoolOptions
pool = PhpPool(PoolOptions(threads=1, queue_capacity=4,
                           ini_path=REPO / "gateway" / "php" / "php.ini"))
pool.start()
""".format(tests=str(REPO / "tests"))


def run_script(body: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_stop_interrupts_a_script_still_running_after_the_grace() -> None:
    got = run_script("""
        async def main():
            call = pool.submit(php_request("sleep.php", query="s=30", has_body=False))
            await asyncio.sleep(0.3)  # it runs now
            started = time.monotonic()
            pool.stop(grace=0.5)
            took = time.monotonic() - started
            print(json.dumps({"took": took, "timed_out": call.outcome.timed_out}))
        asyncio.run(main())
    """)
    assert 0.4 <= float(got["took"]) < 5, got  # the grace, then the interrupt: not 30 s
    assert got["timed_out"] is False  # interrupted by the stop, not by a request timeout


def test_log_lines_waiting_for_the_loop_are_bounded() -> None:
    got = run_script("""
        import structlog
        async def main():
            with structlog.testing.capture_logs() as logs:
                call = pool.submit(php_request("log_flood.php", query="n=20000",
                                               has_body=False))
                time.sleep(3)  # the loop is blocked: nothing drains while PHP logs
                r = await call.response()
                body = await call.read()
                await call.wait_done()
                await asyncio.sleep(0.2)
            stats = pool.stats()
            flood = [e for e in logs if str(e["event"]).startswith("flood line")]
            notice = [e["event"] for e in logs if "log lines dropped" in str(e["event"])]
            print(json.dumps({"body": body.decode(), "kept": len(flood),
                              "dropped": stats.logs_dropped, "notice": notice}))
            pool.stop()
        asyncio.run(main())
    """)
    assert got["body"] == "logged 20000"
    assert got["kept"] == 4096  # MAX_PENDING_LOGS in bridge/pool.c
    assert got["dropped"] == 20000 - 4096
    assert got["notice"] == [f"{20000 - 4096} PHP log lines dropped: the server fell behind"]
