"""One worker process: an event loop (uvloop), one PHP thread pool, and servers on the
sockets inherited from the supervisor. SIGTERM drains: readiness goes false, listeners
close, HTTP/1 answers with `connection: close`, HTTP/2 and HTTP/3 send GOAWAY, in-flight
requests get DRAIN_TIMEOUT_SECS to finish, then PHP shuts down.

Run by the supervisor as `python -m gateway.worker --worker-index I --fds role=fd,... -- ARGS`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence

import structlog

from gateway.config import Config, load_config
from gateway.observability.logging import configure_logging

log = structlog.get_logger("gateway.worker")


def _sockets(spec: str) -> dict[str, socket.socket]:
    out: dict[str, socket.socket] = {}
    for item in spec.split(","):
        role, _, fd = item.partition("=")
        out[role] = socket.socket(fileno=int(fd))
    return out


async def serve(config: Config, index: int, sockets: dict[str, socket.socket]) -> None:
    from gateway.observability.internal import InternalApp
    from gateway.php.pool import PhpPool, PoolOptions
    from gateway.pipeline.app import Pipeline
    from gateway.server.listen import Drainable, start_listeners

    pool = PhpPool(
        PoolOptions(
            threads=config.php_workers_for(index),
            queue_capacity=config.queue_capacity_for(index),
            ini_path=config.php_ini,
            ini_set=config.php_ini_set,
        )
    )
    pool.start()
    internal = InternalApp(pool, index)
    servers: list[Drainable] = await start_listeners(config, sockets, Pipeline(config, pool),
                                                     internal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker ready", worker=index, pid=os.getpid(), php_threads=pool.options.threads)
    await stop.wait()
    internal.ready = False
    log.info("worker draining", worker=index, timeout=config.drain_timeout_secs)
    await asyncio.gather(*(s.drain(config.drain_timeout_secs) for s in servers))
    # Requests still running after the drain window are cut off with the process.
    pool.stop()
    log.info("worker stopped", worker=index)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway.worker")
    parser.add_argument("--worker-index", type=int, required=True)
    parser.add_argument("--fds", required=True)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    config = load_config(rest, os.environ)
    configure_logging(config.log_level, config.service_name)
    import uvloop

    uvloop.run(serve(config, args.worker_index, _sockets(args.fds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
