"""The PHP pool of one worker process, as the configuration asks for it."""

from __future__ import annotations

from gateway.config import Config
from gateway.php.cgi import Script, worker_script_vars
from gateway.php.pool import PoolOptions


def pool_options(config: Config, process_index: int) -> PoolOptions:
    """Every thread runs the worker script when there is one (WORKER_SCRIPT)."""
    threads = config.php_workers_for(process_index)
    script = config.worker_script
    worker_vars = b""
    if script is not None:
        # the script sees itself as a request to the entry point would: /INDEX_FILE
        entry = Script(str(script), f"/{config.index_file}", worker=True)
        worker_vars = worker_script_vars(entry, str(config.document_root))
    return PoolOptions(
        threads=threads,
        queue_capacity=config.queue_capacity_for(process_index),
        ini_path=config.php_ini,
        ini_set=config.php_ini_set,
        worker_script=script,
        worker_threads=threads if script is not None else 0,
        worker_vars=worker_vars,
        worker_max_requests=config.worker_max_requests,
        max_requests=config.php_max_requests,
        request_timeout=config.request_timeout,
        heartbeat_max=config.request_heartbeat_max,
    )
