"""Does compressing big bodies hold up the other connections of a worker's event loop?

Starts php-gateway (one worker process, so every connection shares one event loop), keeps
`--loaders` wrk connections fetching a 1 MiB PHP page in one coding, and meanwhile times small
requests on their own keep-alive connection, one every `--interval` ms: a 1 KiB static file
(answered by the event loop alone) and hello.php (also through the PHP pool). Phases: idle,
then the 1 MiB page as identity, zstd, br and gzip. Run:

    .venv/bin/python -m bench.compression_stall            # ~1 min
    .venv/bin/python -m bench.compression_stall --seconds 20 --loaders 8
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h11

if __package__ in (None, ""):  # `python bench/compression_stall.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs
from bench.servers import REPO, free_port, wait_listening

HERE = Path(__file__).resolve().parent
BIG_PATH = "/page30k.php?kb=1024"
CODINGS = ("identity", "zstd", "br", "gzip")


async def probe(port: int, path: str, seconds: float, interval: float) -> list[float]:
    """Latencies (ms) of GET `path`, one at a time every `interval` s, on one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while not latencies or time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(conn.send(h11.Request(method="GET", target=path,
                                               headers=[("host", "bench")])))
            writer.write(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response) and event.status_code != 200:
                    raise RuntimeError(f"{path}: status {event.status_code}")
                elif isinstance(event, h11.EndOfMessage):
                    break
            latencies.append((time.perf_counter() - started) * 1e3)
            conn.start_next_cycle()
            await asyncio.sleep(interval)
    finally:
        writer.close()
    return latencies


def summary(latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return (f"n={len(latencies):4d}  p50 {q[49]:6.2f}  p99 {q[98]:6.2f}  "
            f"max {max(latencies):6.2f} ms")


async def phase(port: int, coding: str | None, a: argparse.Namespace) -> tuple[str, str, str]:
    load = None
    if coding is not None:
        argv = ["wrk", "-t1", f"-c{a.loaders}", f"-d{int(a.seconds) + 2}s"]
        if coding != "identity":
            argv += ["-H", f"Accept-Encoding: {coding}"]
        load = subprocess.Popen([*argv, f"http://127.0.0.1:{port}{BIG_PATH}"],
                                stdout=subprocess.PIPE, text=True)
        await asyncio.sleep(1)  # let the load settle
    static, php = await asyncio.gather(
        probe(port, "/small.css", a.seconds, a.interval / 1000),
        probe(port, "/hello.php", a.seconds, a.interval / 1000))
    rps = ""
    if load is not None:
        out, _ = load.communicate()
        rps = next((line.split()[1] for line in out.splitlines()
                    if line.startswith("Requests/sec")), "?")
    return summary(static), summary(php), rps


async def main_async(a: argparse.Namespace) -> None:
    run = Path(tempfile.mkdtemp(prefix="php-gateway-stall-"))
    docroot = run / "www"
    shutil.copytree(HERE / "www", docroot)
    (docroot / "small.css").write_bytes(b"body { margin: 0 }\n" * 54)  # 1 KiB
    port = free_port()
    argv = [str(REPO / ".venv" / "bin" / "php-gateway"), "--document-root", str(docroot),
            "--listen-addr", f"127.0.0.1:{port}", "--processes", "1",
            "--php-workers", str(a.php_workers)]
    print(f"$ {' '.join(argv)}", flush=True)
    server = procs.start(argv, run / "gateway.log")
    try:
        wait_listening(port, 60, server)
        await probe(port, "/hello.php", 0, 0)  # one answer: the worker and PHP are up
        print(f"1 MiB page: {BIG_PATH}, {a.loaders} wrk connections; probes every "
              f"{a.interval:g} ms for {a.seconds:g} s", flush=True)
        for coding in (None, *CODINGS):
            static, php, rps = await phase(port, coding, a)
            label = "idle" if coding is None else f"1 MiB {coding} ({rps} req/s)"
            print(f"{label:28}  static 1 KiB: {static}   hello.php: {php}", flush=True)
    finally:
        procs.stop(server)
        shutil.rmtree(run, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="probing time per phase")
    p.add_argument("--loaders", type=int, default=4, help="wrk connections on the 1 MiB page")
    p.add_argument("--interval", type=float, default=10, help="ms between two probes")
    p.add_argument("--php-workers", type=int, default=4)
    asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    main()
