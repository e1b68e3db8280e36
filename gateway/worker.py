"""One worker process: an event loop (uvloop), one PHP thread pool, and servers on the
sockets inherited from the supervisor. SIGTERM drains: readiness goes false, the HTTP,
HTTPS and HTTP/3 listeners close at once (new clients are refused and go elsewhere),
HTTP/1 answers with `connection: close`, HTTP/2 and HTTP/3 send GOAWAY, in-flight requests
get DRAIN_TIMEOUT_SECS to finish, then PHP shuts down and the process exits, at the latest
STOP_GRACE_SECS after the drain window even if a script is still running. The internal
listener closes last, so that probes read "not ready" instead of being refused meanwhile.

Run by the supervisor as
`python -m gateway.worker --worker-index I --fds role=fd,... [--ready-fd FD]
[--rate-table-fd T] [--load-table-fd L] [--metrics-dir D] -- ARGS`;
the worker writes one byte to FD once it serves (the supervisor restarts a worker that
served at once, one that never did with a back-off); T is the memfd of the rate-limit
table all workers share (gateway/pipeline/rate_table.py); L that of the connection counts
by which workers share the TCP listening sockets (gateway/server/balance.py, with more than
one process); D the directory where every worker leaves its metrics snapshot
(gateway/observability/metrics.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import structlog

from gateway.config import Config, load_config
from gateway.observability.logging import configure_logging

log = structlog.get_logger("gateway.worker")

STOP_GRACE_SECS = 1.0  # past the drain window, PHP threads get this long to stop
INTERNAL_DRAIN_SECS = 1.0  # a scrape or probe in flight on the internal port


def _sockets(spec: str) -> dict[str, socket.socket]:
    out: dict[str, socket.socket] = {}
    for item in spec.split(","):
        role, _, fd = item.partition("=")
        out[role] = socket.socket(fileno=int(fd))
    return out


def _signal_ready(fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the supervisor is gone: nothing to tell
        os.write(fd, b"1")
    os.close(fd)


def _cut_off() -> None:
    log.error("PHP requests still running after the drain window; exiting without them",
              grace=STOP_GRACE_SECS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


async def serve(config: Config, index: int, sockets: dict[str, socket.socket],
                ready_fd: int | None = None, metrics_dir: Path | None = None,
                load_table_fd: int | None = None) -> None:
    from gateway.observability.internal import InternalApp
    from gateway.observability.metrics import RequestMetrics, WorkerMetrics
    from gateway.observability.tracing import Tracing
    from gateway.php.pool import PhpPool
    from gateway.php.pool_config import pool_options
    from gateway.pipeline.chain import build_app
    from gateway.pipeline.observe import observe
    from gateway.server.listen import start_listeners
    from gateway.server.tcp import TCPServer  # (aioquic is imported only for HTTP/3)

    pool = PhpPool(pool_options(config, index))
    pool.start()
    provider = None
    tracer = None
    if config.otel_traces_exporter == "otlp":
        from gateway.observability.otel_export import install

        tracer, provider = install(config, index)
    requests = RequestMetrics() if config.metrics else None
    worker_metrics = None  # snapshots for /metrics and /status, when INTERNAL_ADDR is set
    if config.internal_addr is not None:
        if metrics_dir is None:  # run alone, without a supervisor: only this process counts
            metrics_dir = Path(tempfile.mkdtemp(prefix="php-gateway-metrics-"))
        worker_metrics = WorkerMetrics(metrics_dir, index, pool, requests)
    observer = observe(Tracing(tracer), requests, config.access_log, config.server_timing)
    internal = InternalApp(pool, index, config, worker_metrics)
    # the internal server's answers are timed as "internal", never logged nor traced
    internal_app = observe(Tracing(), requests, False, False, kind="internal")(internal)
    load = None
    if load_table_fd is not None:
        from gateway.server.balance import LoadTable

        load = LoadTable.attach(load_table_fd).worker(index)
        os.close(load_table_fd)
    servers = await start_listeners(config, sockets, build_app(config, pool, observer),
                                    internal_app, load)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if worker_metrics is not None:
        worker_metrics.states = [(s.state, "tcp" if isinstance(s, TCPServer) else "quic")
                                 for s in servers.public]
        worker_metrics.start(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything made so far (modules, configuration, the pool) lives as long as the
    # process: frozen, the collector never walks it again, so a full collection while
    # serving scans only what requests made (measured: docs/benchmarks.md)
    gc.collect()
    gc.freeze()
    log.info("worker ready", worker=index, pid=os.getpid(), php_threads=pool.options.threads)
    _signal_ready(ready_fd)
    await stop.wait()
    internal.ready = False  # before anything else: /ready says 503 from here to the exit
    log.info("worker draining", worker=index, timeout=config.drain_timeout_secs)
    deadline = loop.time() + config.drain_timeout_secs
    await asyncio.gather(*(s.drain(config.drain_timeout_secs) for s in servers.public))
    if servers.internal is not None:
        await servers.internal.drain(INTERNAL_DRAIN_SECS)
    # a script that ignores the drain (a long sleep, a blocking call) must not hold the exit
    watchdog = threading.Timer(max(0.0, deadline - loop.time()) + STOP_GRACE_SECS, _cut_off)
    watchdog.daemon = True
    watchdog.start()
    pool.stop()
    watchdog.cancel()
    if worker_metrics is not None:
        worker_metrics.stop()  # the last counts stay in the directory for the next scrapes
    if provider is not None:
        provider.shutdown()  # spans still in the batch leave now
    log.info("worker stopped", worker=index)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway.worker")
    parser.add_argument("--worker-index", type=int, required=True)
    parser.add_argument("--fds", required=True)
    parser.add_argument("--ready-fd", type=int, default=None)
    parser.add_argument("--rate-table-fd", type=int, default=None)
    parser.add_argument("--load-table-fd", type=int, default=None)
    parser.add_argument("--metrics-dir", type=Path, default=None)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    config = load_config(rest, os.environ)
    configure_logging(config.log_level, config.service_name)
    if args.rate_table_fd is not None:
        from gateway.pipeline.rate_table import attach_inherited

        attach_inherited(args.rate_table_fd)
    import uvloop

    uvloop.run(serve(config, args.worker_index, _sockets(args.fds), args.ready_fd,
                     args.metrics_dir, args.load_table_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
