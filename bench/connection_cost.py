"""Instructions per request of the connection layer alone (no PHP, no middleware): the
server runs a trivial app under valgrind's callgrind, once with no request and once with N
requests from h2load; the difference over N is the cost of one request. Instruction counts
repeat exactly on a busy machine, where req/s and CPU time do not, so this is the number
to compare two versions of gateway/server/ and gateway/protocol/ with.

    python -m bench.connection_cost                       # this checkout, HTTP/1.1 and h2c
    python -m bench.connection_cost --tree ../old-checkout --protocols h1
    python -m bench.connection_cost --protocols h2 --http2-impl h2     # HTTP2_IMPL=h2

`--tree` runs another checkout's gateway package with this checkout's interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SERVER = '''
import asyncio, signal, sys, uvloop
from gateway.server.settings import ServerSettings
from gateway.server.tcp import TCPServer

HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]

async def app(ctx):
    status = getattr(ctx, "error_status", None)
    await ctx.send_response(status or 200, HEADERS)
    await ctx.send_data(b"Hello, World!")
    await ctx.end()

async def main(port, impl):
    server = TCPServer(app, ServerSettings(**({"http2_impl": impl} if impl else {})))
    await server.start(host="127.0.0.1", port=port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()

uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instructions(tree: Path, protocol: str, requests: int, workdir: Path,
                 impl: str = "") -> int:
    """callgrind's total for one server run that answers `requests` requests."""
    port = free_port()
    script = workdir / "server.py"
    script.write_text(SERVER)
    log = workdir / f"{protocol}-{requests}.log"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/cg.out",
             sys.executable, str(script), str(port), impl], stdout=out, stderr=subprocess.STDOUT,
            env=env)
    deadline = time.monotonic() + 120
    while b"ready" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text(errors="replace"))
        time.sleep(0.2)
    if requests:
        flag = ["--h1"] if protocol == "h1" else []
        subprocess.run(["h2load", *flag, "-n", str(requests), "-c", "4",
                        f"http://127.0.0.1:{port}/"], check=True, capture_output=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    match = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
    if match is None:
        raise RuntimeError(log.read_text(errors="replace"))
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.connection_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=REPO, help="checkout whose gateway/ runs")
    p.add_argument("--protocols", default="h1,h2", help="h1 and/or h2 (cleartext, h2c)")
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--http2-impl", default="", choices=["", "nghttp2", "h2"],
                   help="HTTP2_IMPL of the server (default: the tree's own default)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="connection-cost-") as tmp:
        workdir = Path(tmp)
        for protocol in a.protocols.split(","):
            idle = instructions(a.tree.resolve(), protocol, 0, workdir, a.http2_impl)
            busy = instructions(a.tree.resolve(), protocol, a.requests, workdir, a.http2_impl)
            impl = f" {a.http2_impl}" if a.http2_impl and protocol == "h2" else ""
            print(f"{protocol}{impl}: {(busy - idle) / a.requests:,.0f} instructions per "
                  f"request ({a.tree.resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
