"""Shared fixtures: one real PHP thread pool per test session (libphp allows one per
process), and a helper that runs a script through it the way the pipeline does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PHP_DIR = Path(__file__).parent / "php"
REPO = Path(__file__).resolve().parents[1]
POOL_THREADS = 4  # classic threads
WORKER_THREADS = 1  # threads running tests/php/worker.php, for worker-mode requests
POOL_QUEUE = 8


@dataclass
class PhpResult:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    outcome: object

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


@pytest.fixture(scope="session")
def php_pool() -> Iterator[object]:
    from gateway.php.cgi import Script, worker_script_vars
    from gateway.php.pool import PhpPool, PoolOptions

    worker = PHP_DIR / "worker.php"
    pool = PhpPool(
        PoolOptions(
            threads=POOL_THREADS + WORKER_THREADS,
            queue_capacity=POOL_QUEUE,
            ini_path=REPO / "gateway" / "php" / "php.ini",
            ini_set=(("upload_tmp_dir", "/tmp"), ("max_execution_time", "30")),
            response_buffer_bytes=64 * 1024,
            worker_script=worker,
            worker_threads=WORKER_THREADS,
            worker_vars=worker_script_vars(Script(str(worker), "/worker.php"), str(PHP_DIR)),
        )
    )
    pool.start()
    yield pool
    pool.stop()


def php_request(
    script: str,
    *,
    method: str = "GET",
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_length: int | None = None,
    path_info: str = "",
    http_version: str = "1.1",
    tls: bool = False,
    has_body: bool = True,
    worker: bool = False,
) -> object:
    from gateway.php.cgi import Script, build_request

    target = f"/{script}{path_info}" + (f"?{query}" if query else "")
    return build_request(
        method=method.encode(),
        target=target.encode(),
        http_version=http_version,
        headers=[(b"host", b"example.test:8080"), *(headers or [])],
        script=Script(filename=str(PHP_DIR / script), name=f"/{script}", path_info=path_info,
                      worker=worker),
        document_root=str(PHP_DIR),
        client=("127.0.0.1", 54321),
        server=("127.0.0.1", 8080),
        tls=tls,
        content_length=content_length,
        request_time=time.time(),
        has_body=has_body,
    )


async def run_php(pool: object, script: str, body: bytes | None = None, **kw: object) -> PhpResult:
    """Submits, streams the body in, collects status, headers and body bytes."""
    from gateway.php.pool import PhpPool

    assert isinstance(pool, PhpPool)
    if body is not None and "content_length" not in kw:
        kw["content_length"] = len(body)
    call = pool.submit(php_request(script, **kw))  # type: ignore[arg-type]
    if body:
        await call.write_body(body)
    call.end_body()
    head = await call.response()
    chunks = []
    while data := await call.read():
        chunks.append(data)
    outcome = await call.wait_done()
    status, headers = head if head else (0, [])
    return PhpResult(status, headers, b"".join(chunks), outcome)


@pytest.fixture
async def php(php_pool: object) -> AsyncIterator[object]:
    async def runner(script: str, body: bytes | None = None, **kw: object) -> PhpResult:
        return await run_php(php_pool, script, body, **kw)

    yield runner
