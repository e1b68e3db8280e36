"""Issue 12 on the real server over real sockets: metrics summed over worker processes,
W3C trace context and request ids on HTTP/1.1, HTTP/2 and HTTP/3, the access log, /ready
through a drain, /config. PHP's own counters, /status and the OTLP export are in
test_observability_php_e2e.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from observability_helpers import get, records, scrape, settle, total, value, wait_for
from protocol_clients import make_client
from server_harness import PROTOCOLS as H2_PROTOCOLS
from server_harness import PerImpl, Server, impl_of, start_server

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")
PROTOCOLS = {"h1": "HTTP/1.1", "h2": "HTTP/2", "h3": "HTTP/3"}


@pytest.fixture(scope="module")
def obs_servers(tmp_path_factory: pytest.TempPathFactory, docroot: Path,
                certs: dict[str, str]) -> Iterator[PerImpl]:
    """TLS (HTTP/1.1, HTTP/2, HTTP/3), two worker processes, access log, Server-Timing."""
    started = PerImpl(lambda impl: start_server(
        tmp_path_factory.mktemp(f"obs-{impl}"), docroot, "--processes", "2",
        "--http2-impl", impl, tls=(certs["cert"], certs["key"]), internal=True,
        workers_ready=2, env={"ACCESS_LOG": "1", "SERVER_TIMING": "on"}))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def obs(obs_servers: PerImpl) -> Server:
    return obs_servers["nghttp2"]


def run_on(proto: str, s: Server, certs: dict[str, str], requests: list[tuple[str, str, list[
        tuple[bytes, bytes]], bytes | None]]) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    async def go() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        client = make_client(proto, s.port, certs["ca"])
        try:
            out = []
            for method, path, headers, body in requests:
                r = await client.request(method, path, headers, body)
                out.append((r.status, {k.lower(): v for k, v in r.headers}, r.body))
            return out
        finally:
            await client.close()

    return asyncio.run(go())


# ---------------------------------------------------------------- point 3: trace context


@pytest.mark.parametrize("proto", H2_PROTOCOLS)
def test_trace_context_and_request_id_on_every_protocol(obs_servers: PerImpl,
                                                        certs: dict[str, str],
                                                        proto: str) -> None:
    obs = obs_servers[impl_of(proto)]
    rid = f"req-{proto}-{os.getpid()}"
    sent = [(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
            (b"tracestate", b"vendor=opaque"), (b"x-request-id", rid.encode()),
            (b"user-agent", b"obs-test/1.0"), (b"referer", b"https://example.test/from")]
    (status, headers, body), (_, fresh, fresh_body) = run_on(
        proto, obs, certs, [("GET", "/server.php", sent, None), ("GET", "/server.php", [], None)])
    assert status == 200
    version, trace, span, flags = headers[b"traceparent"].decode().split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    assert HEX16.fullmatch(span) and span != PARENT  # a span of our own, child of the caller's
    assert headers[b"x-request-id"] == rid.encode()
    server = json.loads(body)["server"]
    assert server["TRACE_ID"] == TRACE and server["SPAN_ID"] == span
    assert server["REQUEST_ID"] == rid
    assert server["TRACEPARENT"] == headers[b"traceparent"].decode()  # to pass on
    assert server["HTTP_TRACESTATE"] == "vendor=opaque"
    timing = headers[b"server-timing"].decode()
    assert re.fullmatch(r"queue;dur=\d+\.\d{3}, php;dur=\d+\.\d{3}, total;dur=\d+\.\d{3}",
                        timing), timing
    # without any: a new trace (not sampled: nothing recorded it) and a new request id
    fresh_rid = fresh[b"x-request-id"].decode()
    assert HEX32.fullmatch(fresh_rid)
    version, trace, span, flags = fresh[b"traceparent"].decode().split("-")
    assert HEX32.fullmatch(trace) and trace != TRACE and flags == "00"
    fresh_server = json.loads(fresh_body)["server"]
    assert (fresh_server["TRACE_ID"], fresh_server["REQUEST_ID"]) == (trace, fresh_rid)

    line = wait_for(lambda: records(obs, event="request", request_id=rid), what="access line")[0]
    assert {k: line[k] for k in ("method", "uri", "status", "protocol", "client", "host",
                                 "user_agent", "referer", "trace_id", "bytes_sent")} == {
        "method": "GET", "uri": "/server.php", "status": 200,
        "protocol": PROTOCOLS[proto.split("-")[0]],
        "client": "127.0.0.1", "host": "127.0.0.1", "user_agent": "obs-test/1.0",
        "referer": "https://example.test/from", "trace_id": TRACE, "bytes_sent": len(body)}
    assert line["duration_ms"] > 0 and line["php_queue_ms"] >= 0
    assert line["php_ms"] is None or line["php_ms"] > 0


@pytest.mark.parametrize("header", [
    f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
    f"00-{TRACE.upper()}-{PARENT}-01",  # upper-case hex
    f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE}-{PARENT}-1",  # short flags
    f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
    f"00_{TRACE}-{PARENT}-01",
    "garbage",
])
def test_malformed_traceparent_starts_a_new_trace(obs: Server, certs: dict[str, str],
                                                  header: str) -> None:
    [(status, headers, _)] = run_on("h2", obs, certs, [
        ("GET", "/hello.php", [(b"traceparent", header.encode())], None)])
    trace = headers[b"traceparent"].decode().split("-")[1]
    assert status == 200 and HEX32.fullmatch(trace) and trace != TRACE


def test_traceparent_rules_a_future_version_and_a_repeated_field(obs: Server,
                                                                 certs: dict[str, str]) -> None:
    future = f"cc-{TRACE}-{PARENT}-01-what-comes-later".encode()
    twice = [(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
             (b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())]
    bad_id = [(b"x-request-id", b"has space"), (b"x-request-id", b"x" * 201)]
    replies = run_on("h2", obs, certs, [("GET", "/hello.php", [(b"traceparent", future)], None),
                                        ("GET", "/hello.php", twice, None),
                                        ("GET", "/hello.php", bad_id[:1], None),
                                        ("GET", "/hello.php", bad_id[1:], None)])
    assert replies[0][1][b"traceparent"].decode().split("-")[1] == TRACE  # fields it knows
    assert replies[1][1][b"traceparent"].decode().split("-")[1] != TRACE  # two: invalid
    for _, headers, _ in replies[2:]:  # a request id unfit for a header or a log: a new one
        assert HEX32.fullmatch(headers[b"x-request-id"].decode())


def test_server_made_answers_carry_ids_and_are_logged(obs: Server,
                                                      certs: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=certs["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", obs.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /a b HTTP/1.1\r\nHost: x\r\nX-Request-ID: bad-request-1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400 ")
    assert b"\r\ntraceparent: 00-" in head and b"\r\nx-request-id: " in head
    line = wait_for(lambda: records(obs, event="request", status=400), what="400 line")[-1]
    assert line["protocol"] == "HTTP/1.1" and HEX32.fullmatch(line["request_id"])


# ---------------------------------------------------------------- point 1: what is counted


def test_metrics_by_protocol_kind_and_size(obs: Server, certs: dict[str, str]) -> None:
    assert obs.internal_port is not None
    settle()
    before, _ = scrape(obs.internal_port)
    upload = b"u" * 1000
    work = [("GET", "/hello.php", [], None), ("GET", "/static.txt", [], None),
            ("GET", "/missing.txt", [], None), ("POST", "/echo_input.php", [], upload)]
    sizes: dict[str, int] = {}
    for proto in PROTOCOLS:
        replies = run_on(proto, obs, certs, work)
        assert [r[0] for r in replies] == [200, 200, 404, 200]
        sizes[proto] = sum(len(r[2]) for r in replies)
    with socket.create_connection(("127.0.0.1", obs.port), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\n\r\n")  # cleartext on the TLS port: a failed handshake
        plain.recv(100)

    async def with_h3_open() -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], str]:
        client = make_client("h3", obs.port, certs["ca"])
        try:
            await client.request("GET", "/hello.php")
            await asyncio.sleep(1.4)  # every process has written its snapshot since
            assert obs.internal_port is not None
            return scrape(obs.internal_port)
        finally:
            await client.close()

    after, text = asyncio.run(with_h3_open())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for proto, version in PROTOCOLS.items():
        assert delta("php_gateway_requests_total", method="GET", code="200",
                     protocol=version) == (2 if proto != "h3" else 3)
        assert delta("php_gateway_requests_total", method="GET", code="404",
                     protocol=version) == 1
        assert delta("php_gateway_requests_total", method="POST", code="200",
                     protocol=version) == 1
        assert delta("php_gateway_request_body_bytes_total", protocol=version) == 1000
        assert delta("php_gateway_response_body_bytes_total", protocol=version) == \
            sizes[proto] + (len(b"Hello, World!") if proto == "h3" else 0)
        for kind, n in (("php", 2 if proto != "h3" else 3), ("static", 1), ("error", 1)):
            assert delta("php_gateway_request_duration_seconds_count", protocol=version,
                         kind=kind) == n, (proto, kind)
    assert delta("php_gateway_php_queue_wait_seconds_count") == 7
    assert delta("php_gateway_php_execution_seconds_count") == 7
    assert delta("php_gateway_php_requests_total") == 7
    assert delta("php_gateway_tls_handshake_failures_total", transport="tcp") >= 1
    assert value(after, "php_gateway_open_connections", protocol="HTTP/3") >= 1
    assert total(after, "php_gateway_request_duration_seconds_count", kind="internal") >= 1
    assert value(after, "php_gateway_worker_processes") == 2
    assert value(after, "php_gateway_php_threads") == 2
    assert value(after, "php_gateway_php_threads_alive") == 2
    assert value(after, "php_gateway_process_resident_memory_bytes") > 50e6
    assert value(after, "php_gateway_process_cpu_seconds_total") > 0
    # Prometheus conventions: one prefix, _total counters, base units, 1 ms to 60 s buckets
    buckets = re.findall(r'^php_gateway_request_duration_seconds_bucket\{[^}]*le="([^"]+)"',
                         text, re.MULTILINE)
    assert buckets[:2] == ["0.001", "0.0025"] and "60.0" in buckets and "+Inf" in buckets
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = match.groups()
        assert name.startswith("php_gateway_")
        if kind == "counter":
            assert name.endswith("_total") or f"\n{name}_total " in text, name
        if kind == "histogram":
            assert name.endswith("_seconds"), name


# ---------------------------------------------------------------- point 2: one scrape, all


def test_counts_add_up_over_processes_and_survive_a_worker_restart(
        tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", internal=True, workers_ready=2)
    assert s.internal_port is not None
    try:
        pids = {get(s.port, "/pid.php")[2] for _ in range(200)}  # a new connection each
        assert len(pids) == 2, "both worker processes must have served"
        settle()
        for _ in range(3):
            samples, _ = scrape(s.internal_port)
            assert value(samples, "php_gateway_requests_total", method="GET", code="200",
                         protocol="HTTP/1.1") == 200
            assert value(samples, "php_gateway_php_requests_total") == 200
            assert value(samples, "php_gateway_worker_processes") == 2
        os.kill(int(sorted(pids)[0]), signal.SIGKILL)  # a crash
        wait_for(lambda: s.logs().count('"worker ready"') >= 3, 20, "the replacement")
        samples, _ = scrape(s.internal_port)
        assert value(samples, "php_gateway_requests_total", method="GET", code="200",
                     protocol="HTTP/1.1") == 200  # the dead worker's counts are kept
        assert value(samples, "php_gateway_php_requests_total") == 200
        for _ in range(10):
            assert get(s.port, "/hello.php")[0] == 200
        settle()
        samples, _ = scrape(s.internal_port)
        assert value(samples, "php_gateway_requests_total", method="GET", code="200",
                     protocol="HTTP/1.1") == 210
        assert value(samples, "php_gateway_worker_processes") == 2
    finally:
        s.stop()


# ---------------------------------------------------------------- point 7: /ready in a drain


def test_ready_answers_503_from_the_drain_to_the_exit(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--processes", "2", internal=True, workers_ready=2)
    assert s.internal_port is not None
    try:
        assert get(s.internal_port, "/ready")[0] == 200
        assert json.loads(get(s.internal_port, "/health")[2])["status"] == "ok"
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(get, s.port, "/sleep.php?s=2")
            time.sleep(0.5)
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)  # the supervisor passes the signal on to every worker process
            answers: list[int | str] = []
            while s.proc.poll() is None:
                try:
                    answers.append(get(s.internal_port, "/ready")[0])
                except OSError:
                    answers.append("refused")
                time.sleep(0.05)
            assert in_flight.result(10)[0] == 200
        assert s.proc.returncode == 0
        served = [a for a in answers if a != "refused"]
        assert set(served) == {503}, answers  # never "ready" once the drain began
        assert len(served) >= 20  # answered for the whole 1.5 s the request still ran
        first_refused = answers.index("refused") if "refused" in answers else len(answers)
        assert all(a == "refused" for a in answers[first_refused:])  # only at the very end
    finally:
        s.stop()


# ---------------------------------------------------------------- 429s and /config


def test_rate_limit_refusals_are_counted_and_config_is_redacted(tmp_path: Path,
                                                                docroot: Path) -> None:
    s = start_server(tmp_path, docroot, internal=True, env={
        "RATE_LIMIT": "2", "RATE_WINDOW": "3600",
        "PHP_INI_SET": "mysqli.default_pw=hunter2;session.save_path=redis://u:s3cret@db:6379"})
    assert s.internal_port is not None
    try:
        assert [get(s.port, "/hello.php")[0] for _ in range(4)] == [200, 200, 429, 429]
        samples, _ = scrape(s.internal_port)
        assert value(samples, "php_gateway_rate_limited_total") == 2
        assert value(samples, "php_gateway_requests_total", method="GET", code="429",
                     protocol="HTTP/1.1") == 2
        status, headers, body = get(s.internal_port, "/config")
        assert status == 200 and headers["content-type"] == "application/json"
        config = json.loads(body)
        assert config["RATE_LIMIT"] == "2" and config["INTERNAL_ADDR"].startswith("127.0.0.1:")
        assert "hunter2" not in body.decode() and "s3cret" not in body.decode()
        assert config["PHP_INI_SET"] == ("mysqli.default_pw=<redacted>, "
                                         "session.save_path=redis://<redacted>@db:6379")
        # the internal server counts no traffic of its own, and metrics can be turned off
        assert value(samples, "php_gateway_requests_total", method="GET", code="200",
                     protocol="HTTP/1.1") == 2
    finally:
        s.stop()


def test_metrics_off_answers_404_and_adds_nothing(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, internal=True, env={"METRICS": "off"})
    assert s.internal_port is not None
    try:
        status, headers, _ = get(s.port, "/hello.php")
        assert status == 200 and "traceparent" in headers and "server-timing" not in headers
        assert get(s.internal_port, "/metrics")[:3:2] == (404, b"Metrics are off (METRICS=off).\n")
        assert get(s.internal_port, "/status?json")[0] == 200
    finally:
        s.stop()


def test_metrics_needs_the_internal_server() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "--document-root", ".", "--metrics",
                          "on"], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 2
    assert "--metrics / METRICS: needs INTERNAL_ADDR" in out.stderr


# ---------------------------------------------------------------- point 9: the dashboard


def test_every_metric_the_dashboard_and_alerts_query_is_served(obs: Server,
                                                                certs: dict[str, str]) -> None:
    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    dashboard = json.loads((deploy / "grafana" / "dashboards" / "php-gateway.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for group in yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())["groups"]:
        exprs += [rule["expr"] for rule in group["rules"]]
    queried = {m for e in exprs for m in re.findall(r"\bphp_gateway_\w+", e)}
    assert len(queried) >= 15
    run_on("h2", obs, certs, [("GET", "/hello.php", [], None), ("GET", "/static.txt", [], None)])
    settle()
    assert obs.internal_port is not None
    samples, _ = scrape(obs.internal_port)
    served = {name for name, _ in samples}
    assert queried <= served, queried - served
