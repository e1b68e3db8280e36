"""The real php-gateway serving PHP to real clients: curl, httpx (HTTP/2), h2load."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import REPO, Server, curl, raw_connection, start_server

from gateway.cpus import available_cpus

pytestmark = pytest.mark.e2e


def parse_head(raw: bytes) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """Splits curl -i output of one response into status, headers, body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, body


def server_vars(out: bytes) -> dict[str, Any]:
    return json.loads(out)["server"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- HTTP/1.1


def test_hello_over_http11(server: Server) -> None:
    r = curl("-i", "--http1.1", f"{server.url}/hello.php")
    status, headers, body = parse_head(r.stdout)
    assert status == 200
    assert body == b"Hello, World!"
    assert headers[b"content-type"] == [b"text/html; charset=UTF-8"]
    assert headers[b"server"] == [b"php-gateway"]
    assert b"date" in headers


def test_superglobals_over_http(server: Server) -> None:
    r = curl("--http1.1", "-H", "X-Trace-Me: yes", f"{server.url}/server.php/extra?x[]=1&y=2")
    s = server_vars(r.stdout)
    assert s["REMOTE_ADDR"] == "127.0.0.1"
    assert int(s["REMOTE_PORT"]) > 0
    assert s["SERVER_ADDR"] == "127.0.0.1"
    assert s["SERVER_PORT"] == str(server.port)
    assert s["SERVER_NAME"] == "127.0.0.1"
    assert s["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert s["HTTP_X_TRACE_ME"] == "yes"
    assert s["REQUEST_URI"] == "/server.php/extra?x[]=1&y=2"
    assert s["SCRIPT_NAME"] == "/server.php"
    assert s["PATH_INFO"] == "/extra"
    assert s["PHP_SELF"] == "/server.php/extra"
    assert s["SCRIPT_FILENAME"] == str(server.docroot / "server.php")
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert json.loads(r.stdout)["get"] == {"x": ["1"], "y": "2"}


def test_every_method_reaches_php(server: Server) -> None:
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"]:
        r = curl("-X", method, "--data-binary", "payload", "-H", "Content-Type: text/plain",
                 f"{server.url}/server.php")
        d = json.loads(r.stdout)
        assert d["server"]["REQUEST_METHOD"] == method
        assert d["input"] == "payload", method
    r = curl("-I", f"{server.url}/hello.php")
    status, _, body = parse_head(r.stdout)
    assert status == 200 and body == b""


def test_upload_streams_into_php(server: Server, tmp_path: Path) -> None:
    data = os.urandom(12 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    r = curl("-F", f"f=@{src}", f"{server.url}/upload.php?dest={dest}")
    d = json.loads(r.stdout)
    assert d["f"]["size"] == len(data)
    assert d["f"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert d["f"]["moved"] is True
    assert (dest / "big.bin").read_bytes() == data


def test_chunked_request_body(server: Server, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    src = tmp_path / "c.bin"
    src.write_bytes(data)
    r = curl("-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/octet-stream",
             "--data-binary", f"@{src}", f"{server.url}/echo_input.php")
    assert json.loads(r.stdout) == {"length": len(data), "method": "POST",
                                    "sha256": hashlib.sha256(data).hexdigest()}


def _line_arrivals(lines: list[tuple[float, bytes]]) -> float:
    return lines[-1][0] - lines[0][0]


def test_streaming_response_http11_chunked(server: Server) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with httpx.Client() as client, client.stream(
        "GET", f"{server.url}/stream.php?n=5&ms=150"
    ) as resp:
        assert resp.headers["transfer-encoding"] == "chunked"
        for line in resp.iter_lines():
            arrivals.append((time.monotonic(), line.encode()))
    assert [a[1].split()[1] for a in arrivals] == [b"0", b"1", b"2", b"3", b"4"]
    assert _line_arrivals(arrivals) > 0.45  # lines arrived as PHP flushed them


def test_binary_response_exact(server: Server) -> None:
    r = curl(f"{server.url}/big.php?kb=2048")
    assert r.stdout == bytes(range(256)) * 32 * 256


# ---------------------------------------------------------------- routing


def test_routing_never_serves_source_or_dotfiles(server: Server) -> None:
    for path in ["/.env", "/.git/config", "/hello.php/../.env", "/%2e%2e/%2e%2e/etc/passwd",
                 "/..%2f..%2fetc/passwd", "/broken.inc", "/static.txt%00.php"]:
        r = curl("-o", "/dev/null", "-w", "%{http_code}", "--path-as-is", server.url + path)
        assert r.stdout in (b"400", b"403", b"404"), (path, r.stdout)
    r = curl(f"{server.url}/hello.php")
    assert b"<?php" not in r.stdout


def test_static_and_directories(server: Server) -> None:
    r = curl("-i", f"{server.url}/static.txt")
    status, headers, body = parse_head(r.stdout)
    assert status == 200
    assert headers[b"content-type"] == [b"text/plain; charset=utf-8"]
    assert body == b"plain static text\n"
    assert headers[b"content-length"] == [b"18"]
    r = curl("-i", f"{server.url}/sub")
    status, headers, _ = parse_head(r.stdout)
    assert status == 301 and headers[b"location"] == [b"/sub/"]
    r = curl(f"{server.url}/sub/")
    assert r.stdout == b"sub index"


def test_single_entry_point(tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.php").write_text(
        "<?php header('Content-Type: application/json'); echo json_encode(["
        "'uri' => $_SERVER['REQUEST_URI'], 'script' => $_SERVER['SCRIPT_NAME'],"
        "'path_info' => $_SERVER['PATH_INFO'], 'self' => $_SERVER['PHP_SELF'], 'get' => $_GET]);"
    )
    (root / "app.css").write_text("body{}")
    (root / "other.php").write_text("<?php echo 'other';")
    s = start_server(tmp_path, root, "--index-file", "index.php")
    try:
        d = json.loads(curl(f"{s.url}/users/5?tab=posts").stdout)
        assert d == {"uri": "/users/5?tab=posts", "script": "/index.php", "path_info": "",
                     "self": "/index.php", "get": {"tab": "posts"}}
        d = json.loads(curl(f"{s.url}/").stdout)
        assert d["uri"] == "/" and d["script"] == "/index.php"
        r = curl("-i", f"{s.url}/app.css")
        status, headers, body = parse_head(r.stdout)
        assert (status, body) == (200, b"body{}")
        assert headers[b"content-type"] == [b"text/css; charset=utf-8"]
        r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{s.url}/other.php")
        assert r.stdout == b"404"
    finally:
        s.stop()


# ---------------------------------------------------------------- failures and limits


def test_fatal_is_500_and_server_keeps_serving(server: Server) -> None:
    for kind in ["fatal", "exception", "memory"]:
        r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/fail.php?kind={kind}")
        assert r.stdout == b"500", kind
    assert curl(f"{server.url}/hello.php").stdout == b"Hello, World!"


def test_overload_answers_503_with_retry_after(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--php-workers", "1", "--queue-capacity", "1")
    try:
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=20) as client:
                return await asyncio.gather(
                    *[client.get(f"{s.url}/sleep.php?s=1") for _ in range(4)])

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        # one runs, at most one waits in the queue, the rest are refused at once
        assert set(codes) == {200, 503} and codes.count(200) <= 2, codes
        refused = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" for r in refused)
    finally:
        s.stop()


def test_request_timeout_answers_504(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--request-timeout", "1s")
    try:
        t0 = time.monotonic()
        r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{s.url}/sleep.php?s=10")
        assert r.stdout == b"504"
        assert time.monotonic() - t0 < 5
        assert curl(f"{s.url}/hello.php").stdout == b"Hello, World!"
    finally:
        s.stop()


def test_installed_command_refuses_a_bad_value(docroot: Path) -> None:
    """The `php-gateway` console script itself (what `make serve` and the image run)."""
    command = Path(sys.executable).parent / "php-gateway"
    out = subprocess.run([str(command), "--document-root", str(docroot), "--listen-addr", "8080"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--listen-addr / LISTEN_ADDR" in out.stderr and "host:port" in out.stderr


def test_bad_config_value_names_the_option(docroot: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "--document-root", str(docroot),
                          "--php-workers", "many"], capture_output=True, text=True, cwd=REPO,
                         timeout=30)
    assert out.returncode == 2
    assert "--php-workers / PHP_WORKERS" in out.stderr
    out = subprocess.run([sys.executable, "-m", "gateway", "--document-root", str(docroot)],
                         capture_output=True, text=True, cwd=REPO, timeout=30,
                         env={**os.environ, "HEADER_TIMEOUT_SECS": "-3"})
    assert out.returncode == 2
    assert "HEADER_TIMEOUT_SECS" in out.stderr


def imported(s: Server, module: str) -> int:
    """How many processes imported `module` (PYTHONPROFILEIMPORTTIME's lines in the log)."""
    return sum(1 for line in s.logs().splitlines()
               if line.startswith("import time:") and line.split("|")[-1].strip() == module)


def test_http3_and_an_exporter_import_what_they_need(tmp_path: Path, docroot: Path,
                                                     certs: dict[str, str]) -> None:
    s = start_server(tmp_path, docroot, tls=(certs["cert"], certs["key"]), env={
        "PYTHONPROFILEIMPORTTIME": "1", "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert imported(s, "aioquic") == 1 and imported(s, "opentelemetry.sdk") >= 1
    finally:
        s.stop()


def test_defaults_run_a_process_per_cpu_with_two_php_threads_each(tmp_path: Path,
                                                                   docroot: Path) -> None:
    """No sizing options, as `docker run` without flags: PROCESSES=auto is one process per
    CPU this machine lets us use, PHP_WORKERS=0 twice that many PHP threads."""
    cpus = available_cpus()
    s = start_server(tmp_path, docroot, sizing=(), workers_ready=cpus, internal=True,
                     env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        # a worker imports what its configuration uses: no HTTP/3, no exporter here
        assert imported(s, "aioquic") == imported(s, "opentelemetry.sdk") == 0, s.logs()
        assert imported(s, "gateway.php.pool") == cpus  # (the check sees the workers)
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == cpus
        deadline = time.monotonic() + 15  # each process reports itself once a second
        while True:
            raw = curl("-H", "Accept: application/json",
                       f"http://127.0.0.1:{s.internal_port}/status").stdout
            processes = json.loads(raw)["processes"]
            if len(processes) == cpus or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(processes) == cpus, raw
        assert [len(p["threads"]) for p in processes] == [2] * cpus
        assert curl(f"{s.url}/hello.php").stdout == b"Hello, World!"
    finally:
        s.stop()


def test_crashed_worker_is_restarted(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2)
    try:
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while s.logs().count("worker ready") < 3:
            assert time.monotonic() < deadline, s.logs()
            time.sleep(0.1)
        assert "worker died" in s.logs()
        for _ in range(10):
            assert curl(f"{s.url}/hello.php").stdout == b"Hello, World!"
    finally:
        s.stop()


def test_connections_spread_over_worker_processes(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", workers_ready=2)
    try:
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        # all connected before any request: a burst, as an HTTP/2 client pool opens them
        conns = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(24)]
        pids = []
        for c in conns:
            c.sendall(b"GET /pid.php HTTP/1.0\r\nHost: x\r\n\r\n")  # body ends at close
        for c in conns:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            c.close()
            assert data.startswith(b"HTTP/1.1 200 "), data
            pids.append(data.partition(b"\r\n\r\n")[2].decode())
        # one shared socket let the first worker to wake take the whole burst
        assert set(pids) == set(children), pids
    finally:
        s.stop()


def test_port_held_by_another_process_is_refused(docroot: Path) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "gateway", "--listen-addr", f"127.0.0.1:{port}",
             "--document-root", str(docroot), "--processes", "2"],
            capture_output=True, timeout=30, cwd=REPO,
        )
    assert r.returncode != 0
    assert f"--listen-addr / LISTEN_ADDR: cannot listen on 127.0.0.1:{port}".encode() in r.stderr


def test_graceful_drain_finishes_in_flight(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot)
    proc = subprocess.Popen(["curl", "-sS", f"{s.url}/sleep.php?s=1"], stdout=subprocess.PIPE)
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert out == b"slept 1"
    assert s.proc.wait(15) == 0


# ---------------------------------------------------------------- HTTP/2 and TLS


def test_tls_http2_and_http11(tls_server: Server, certs: dict[str, str]) -> None:
    r = curl("--cacert", certs["ca"], "--http2", f"{tls_server.url}/server.php")
    s = server_vars(r.stdout)
    assert s["HTTPS"] == "on" and s["REQUEST_SCHEME"] == "https"
    assert s["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert s["HTTP_HOST"] == f"127.0.0.1:{tls_server.port}"
    r = curl("--cacert", certs["ca"], "--http1.1", f"{tls_server.url}/server.php")
    s = server_vars(r.stdout)
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1" and s["HTTPS"] == "on"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_versions_negotiate_h2_by_alpn(tls_server: Server, certs: dict[str, str],
                                           version: str) -> None:
    r = curl("--cacert", certs["ca"], "--http2", f"--tlsv{version}", "--tls-max", version,
             "-w", "\n%{http_version} %{ssl_verify_result}", f"{tls_server.url}/server.php")
    body, _, tail = r.stdout.rpartition(b"\n")
    assert tail == b"2 0"  # HTTP/2 picked by ALPN, certificate verified
    s = server_vars(body)
    assert (s["HTTPS"], s["REQUEST_SCHEME"], s["SERVER_PROTOCOL"]) == ("on", "https", "HTTP/2.0")


def test_tls_suite_follows_the_clients_preference(tls_server: Server,
                                                  certs: dict[str, str]) -> None:
    for suites in ["TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
                   "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"]:
        r = curl("-v", "--cacert", certs["ca"], "--tls13-ciphers", suites,
                 f"{tls_server.url}/hello.php")
        assert r.stdout == b"Hello, World!"
        assert f"TLSv1.3 / {suites.partition(':')[0]}".encode() in r.stderr, r.stderr


def test_tls_below_1_2_is_refused(tls_server: Server, certs: dict[str, str]) -> None:
    r = subprocess.run(["curl", "-sS", "--cacert", certs["ca"], "--tlsv1.1", "--tls-max", "1.1",
                        f"{tls_server.url}/hello.php"], capture_output=True, timeout=20)
    assert r.returncode != 0 and r.stdout == b""


def _h2_client(port: int, ca: str) -> tuple[ssl.SSLSocket, Any]:
    import h2.config
    import h2.connection

    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                           server_hostname="127.0.0.1")
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def test_rapid_reset_does_not_tie_up_php(tls_server: Server, certs: dict[str, str]) -> None:
    """CVE-2023-44487: 120 requests for a 5 s script, each reset at once, cost the pool
    nothing (the server has 2 PHP threads): a request on another connection is answered
    at once, and the flood ends with GOAWAY(ENHANCE_YOUR_CALM) past 100 resets."""
    import h2.errors
    import h2.events

    def fields(path: bytes) -> list[tuple[bytes, bytes]]:
        return [(b":method", b"GET"), (b":path", path), (b":scheme", b"https"),
                (b":authority", b"127.0.0.1")]

    flood, attacker = _h2_client(tls_server.port, certs["ca"])
    for _ in range(120):
        stream_id = attacker.get_next_available_stream_id()
        attacker.send_headers(stream_id, fields(b"/sleep.php?s=5"), end_stream=True)
        attacker.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    flood.sendall(attacker.data_to_send())
    sock, client = _h2_client(tls_server.port, certs["ca"])
    t0 = time.monotonic()
    client.send_headers(1, fields(b"/hello.php"), end_stream=True)
    sock.sendall(client.data_to_send())
    body, ended = b"", False
    while not ended:
        data = sock.recv(65536)
        assert data, "connection closed before the answer"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, 1)
            ended = ended or isinstance(event, h2.events.StreamEnded)
        sock.sendall(client.data_to_send())
    assert body == b"Hello, World!"
    assert time.monotonic() - t0 < 2.0  # not behind 120 five-second scripts
    sock.close()
    goaway = None
    while goaway is None and (data := flood.recv(65536)):
        goaway = next((e for e in attacker.receive_data(data)
                       if isinstance(e, h2.events.ConnectionTerminated)), None)
    flood.close()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_h2c_prior_knowledge_and_upgrade(server: Server) -> None:
    r = curl("--http2-prior-knowledge", f"{server.url}/server.php")
    assert server_vars(r.stdout)["SERVER_PROTOCOL"] == "HTTP/2.0"
    r = curl("--http2", "-i", f"{server.url}/server.php")
    assert b"101 Switching Protocols" in r.stdout
    assert b'"SERVER_PROTOCOL":"HTTP/2.0"' in r.stdout


def test_httpx_http2_concurrent_streams(tls_server: Server, certs: dict[str, str]) -> None:
    async def run() -> tuple[list[httpx.Response], float]:
        verify = ssl.create_default_context(cafile=certs["ca"])
        async with httpx.AsyncClient(http2=True, verify=verify, timeout=20) as client:
            t0 = time.monotonic()
            rs = await asyncio.gather(
                *[client.get(f"{tls_server.url}/sleep.php?s=0.5") for _ in range(2)],
                *[client.get(f"{tls_server.url}/hello.php") for _ in range(20)],
            )
            return rs, time.monotonic() - t0

    responses, elapsed = asyncio.run(run())
    assert all(r.http_version == "HTTP/2" for r in responses)
    assert [r.content for r in responses[:2]] == [b"slept 0.5"] * 2
    assert all(r.content == b"Hello, World!" for r in responses[2:])
    assert elapsed < 3


def test_streaming_response_http2_data_frames(tls_server: Server, certs: dict[str, str]) -> None:
    arrivals: list[float] = []
    verify = ssl.create_default_context(cafile=certs["ca"])
    with httpx.Client(http2=True, verify=verify) as client, client.stream(
        "GET", f"{tls_server.url}/stream.php?n=5&ms=150"
    ) as resp:
        assert resp.http_version == "HTTP/2"
        for _ in resp.iter_lines():
            arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] > 0.45


def test_h2load_short_run(tls_server: Server) -> None:
    if shutil.which("h2load") is None:
        pytest.fail("h2load is not installed (nghttp2-client)")
    out = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10",
                          f"{tls_server.url}/hello.php"], capture_output=True, text=True,
                         timeout=120)
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout, out.stdout


def test_malformed_request_gets_400_and_close(server: Server) -> None:
    with raw_connection(server.port) as sock:
        sock.sendall(b"GET /hello.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in data.lower()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_upload_is_not_held_in_memory(server: Server) -> None:
    """A 60 MiB upload (the default limit is 64 MiB) passes through a worker whose memory
    grows far less than that."""
    worker = int(subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                                text=True).stdout.split()[0])
    before = _rss_kib(worker)
    size = 60 * 1024 * 1024
    feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    peak = before
    proc = subprocess.Popen(
        ["curl", "-sS", "-H", "Content-Type: application/octet-stream", "-H",
         f"Content-Length: {size}", "--data-binary", "@-", f"{server.url}/echo_input.php"],
        stdin=feeder.stdout, stdout=subprocess.PIPE)
    while proc.poll() is None:
        peak = max(peak, _rss_kib(worker))
        time.sleep(0.02)
    out = proc.stdout.read() if proc.stdout else b""
    feeder.wait()
    d = json.loads(out)
    print(f"worker RSS {before // 1024} MiB -> peak {peak // 1024} MiB")
    assert d["length"] == size
    assert d["sha256"] == hashlib.sha256(b"\0" * size).hexdigest()
    assert peak - before < 12 * 1024, f"worker RSS grew by {(peak - before) // 1024} MiB"
