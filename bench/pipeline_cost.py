"""Instructions per request of the pipeline alone: the middleware chain, the endpoint, the
PHP stage and the real PHP pool, under a request stream that does nothing (no socket, no
parser), on the event loop's thread. Counted by callgrind over two runs of different
length, so start-up cancels out; `--without` leaves a stage out to price it.

    python -m bench.pipeline_cost                         # hello.php, every default stage
    python -m bench.pipeline_cost --without observe       # the observing stage's share
    python -m bench.pipeline_cost --page /server.php --option=--server-timing=on

The connection layer is bench/connection_cost.py; the whole server bench/engine_cost.py
--loop. See docs/benchmarks.md, "The front end's own cost".
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import REPO

HEADERS = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


class NullStream:
    """A RequestContext whose sends cost nothing: what is left is the pipeline's."""

    __slots__ = ("bytes_received", "bytes_sent", "client", "error_status", "request",
                 "server", "tls")

    def __init__(self, request: object) -> None:
        self.request = request
        self.client = ("127.0.0.1", 50000)
        self.server = ("127.0.0.1", 8080)
        self.tls = False
        self.error_status = None
        self.bytes_received = self.bytes_sent = 0

    @property
    def disconnected(self) -> asyncio.Event:
        return asyncio.Event()

    def take_complete_body(self) -> bytes | None:
        return None

    async def send_interim(self, status: int, headers: object) -> None:
        pass

    async def send_response(self, status: int, headers: object) -> None:
        pass

    async def send_data(self, data: bytes, flush: bool = True) -> None:
        self.bytes_sent += len(data)

    async def end(self) -> None:
        pass


def serve(requests: int, page: str, without: list[str], options: list[str]) -> None:
    """Runs `requests` requests through the pipeline, 4 at a time (the child process)."""
    import uvloop

    from gateway.config import load_config
    from gateway.observability.tracing import Tracing
    from gateway.php.pool import PhpPool
    from gateway.php.pool_config import pool_options
    from gateway.pipeline.chain import build_app
    from gateway.pipeline.observe import observe
    from gateway.protocol.events import Request

    if "compression" in without:
        options = [*options, "--compression", "off"]
    config = load_config(["--document-root", str(REPO / "tests" / "php"), "--php-workers", "2",
                          "--processes", "1", *options], {})
    pool = PhpPool(pool_options(config, 0))
    pool.start()
    observer = None if "observe" in without else observe(Tracing(None), None, False, False)
    app = build_app(config, pool, observer)
    request = Request(1, b"GET", page.encode(), HEADERS, "1.1", authority=b"127.0.0.1:8080",
                      has_body=False)
    gc.collect()
    gc.freeze()  # as the worker does before it serves

    async def run() -> None:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()

        async def client(n: int) -> None:
            for _ in range(n):
                await loop.create_task(app(NullStream(request)),  # type: ignore[arg-type]
                                       context=context.copy())

        await asyncio.gather(*(client(requests // 4) for _ in range(4)))

    uvloop.run(run())
    pool.stop()


def loop_instructions(requests: int, argv: list[str], out: Path) -> int:
    """Instructions of the main thread (the event loop) in one callgrind run."""
    subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                    f"--callgrind-out-file={out}/cg.{requests}.%p", sys.executable, "-m",
                    "bench.pipeline_cost", "--serve", str(requests), *argv],
                   cwd=REPO, check=True, capture_output=True)
    [main_thread] = out.glob(f"cg.{requests}.*-01")
    text = main_thread.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    assert match, f"no totals in {main_thread}"
    return int(match[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--page", default="/hello.php", help="a script of tests/php")
    p.add_argument("--without", action="append", default=[], choices=["observe", "compression"])
    p.add_argument("--option", action="append", default=[],
                   help="a php-gateway option for the pipeline, e.g. --option=--server-timing=on")
    p.add_argument("--requests", type=int, default=1200, help="the difference of the two runs")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    argv = ["--page", a.page, *(f"--without={w}" for w in a.without),
            *(f"--option={o}" for o in a.option)]
    if a.serve is not None:
        serve(a.serve, a.page, a.without, a.option)
        return 0
    with tempfile.TemporaryDirectory(prefix="php-gateway-pipeline-") as tmp:
        short, long = 400, 400 + a.requests
        counts = [loop_instructions(n, argv, Path(tmp)) for n in (short, long)]
    per_request = (counts[1] - counts[0]) / a.requests
    label = " ".join([a.page, *(f"without {w}" for w in a.without), *a.option])
    print(f"{label}: {per_request:,.0f} instructions per request (event-loop thread)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # steadier counts between the two runs
    sys.exit(main())
