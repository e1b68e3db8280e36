"""Issue 12, the PHP side on the real server: thread, queue, 503, timeout, fatal and SSE
metrics, PHP's log lines, /status in headless Chromium, and spans exported over OTLP/HTTP
to a real receiver that decodes the protobuf."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from observability_helpers import get, records, scrape, value, wait_for
from otlp_receiver import otlp_receiver
from server_harness import Server, start_server

pytestmark = pytest.mark.e2e

BUSY = (230, 81, 0)  # gateway/observability/status.py: .busy
IDLE = (46, 125, 50)  # .idle


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory: pytest.TempPathFactory, docroot: Path) -> Iterator[Server]:
    """One process, one PHP thread, a queue of one: every gauge and refusal is easy to
    provoke, and this process's own values are read live."""
    s = start_server(tmp_path_factory.mktemp("one"), docroot, "--php-workers", "1",
                     "--queue-capacity", "1", internal=True, env={"ACCESS_LOG": "1"})
    yield s
    s.stop()


def metrics(s: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert s.internal_port is not None
    return scrape(s.internal_port)[0]


def status_json(s: Server) -> dict[str, object]:
    assert s.internal_port is not None
    status, headers, body = get(s.internal_port, "/status", {"Accept": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json"
    return json.loads(body)  # type: ignore[no-any-return]


def chromium_screenshot(url: str, out: Path, tmp: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/install-system-deps.sh installs it)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1100,800",
                    "--hide-scrollbars", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=60)


def test_threads_queue_503_and_status_page(one_thread: Server, tmp_path: Path) -> None:
    s = one_thread
    assert s.internal_port is not None
    release = tmp_path / "release"
    hold = f"/hold.php?until={release}"
    with ThreadPoolExecutor(2) as pool:
        # both wait through the screenshot, which can take over 15 s on a CI machine
        running = pool.submit(get, s.port, hold, timeout=60)
        wait_for(lambda: value(metrics(s), "php_gateway_php_threads_busy") == 1, 5, "busy")
        queued = pool.submit(get, s.port, "/sleep.php?s=0.1&queued", timeout=60)
        wait_for(lambda: value(metrics(s), "php_gateway_php_queue_depth") == 1, 5, "queued")
        status, headers, _ = get(s.port, "/hello.php")  # no thread, no room: refused
        assert (status, headers["retry-after"]) == (503, "1")
        live = metrics(s)
        doc = status_json(s)
        page = get(s.internal_port, "/status")
        shot = tmp_path / "status.png"
        chromium_screenshot(f"http://127.0.0.1:{s.internal_port}/status", shot, tmp_path)
        release.touch()
        held, after = running.result(10), queued.result(10)
        assert (held[0], held[2], after[0]) == (200, b"released", 200), (held, after, s.logs())
    assert value(live, "php_gateway_php_threads") == 1
    assert value(live, "php_gateway_php_threads_busy") == 1
    assert value(live, "php_gateway_php_queue_depth") == 1
    assert value(live, "php_gateway_requests_in_flight") == 2
    assert value(live, "php_gateway_php_rejected_total") == 1
    assert value(live, "php_gateway_open_connections", protocol="HTTP/1.1") == 2

    [proc] = doc["processes"]  # type: ignore[index]
    [thread] = proc["threads"]
    assert (thread["state"], thread["method"], thread["uri"]) == ("busy", "GET", hold)
    assert thread["elapsed_ms"] > 0 and proc["queue_depth"] == 1
    assert [(r["state"], r["uri"]) for r in proc["slowest"]] == [
        ("running", hold), ("queued", "/sleep.php?s=0.1&queued")]
    # the page a person sees: it reloads itself and names the busy thread's request
    assert page[0] == 200 and page[1]["content-type"] == "text/html; charset=utf-8"
    assert b'<meta http-equiv="refresh" content="2">' in page[2]
    assert hold.encode() in page[2] and b'class="state busy"' in page[2]
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1100, 800)
    colors = dict((rgb, n) for n, rgb in image.getcolors(1100 * 800) or [])
    assert colors.get(BUSY, 0) > 300, "the busy badge is drawn"  # a badge is ~40x18 px
    assert colors.get(IDLE, 0) == 0, "the only thread is not idle"
    assert sum(n for rgb, n in colors.items() if rgb != (250, 250, 250)) > 5000  # text drawn


def test_status_page_shows_idle_threads_and_errors_in_chromium(one_thread: Server,
                                                               tmp_path: Path) -> None:
    s = one_thread
    assert s.internal_port is not None
    assert get(s.port, "/fail.php?kind=fatal")[0] == 500
    doc = status_json(s)
    [proc] = doc["processes"]  # type: ignore[index]
    assert proc["threads"] == [{"thread": 0, "state": "idle"}]
    messages = [e.get("message", "") for e in proc["recent_errors"]]
    assert any("undefined_function_xyz" in m for m in messages)
    assert any(e.get("status") == 500 and e.get("uri") == "/fail.php?kind=fatal"
               for e in proc["recent_errors"])
    shot = tmp_path / "idle.png"
    chromium_screenshot(f"http://127.0.0.1:{s.internal_port}/status", shot, tmp_path)
    from PIL import Image

    colors = {rgb: n for n, rgb in Image.open(shot).convert("RGB").getcolors(1100 * 800) or []}
    assert colors.get(IDLE, 0) > 300 and colors.get(BUSY, 0) == 0


def test_timeout_and_fatal_are_counted_and_logged_once(tmp_path: Path, docroot: Path) -> None:
    s = start_server(tmp_path, docroot, "--request-timeout", "1", internal=True,
                     env={"ACCESS_LOG": "1"})
    try:
        check_timeout_and_fatal(s)
    finally:
        s.stop()


def check_timeout_and_fatal(s: Server) -> None:
    before = metrics(s)
    rid_timeout, rid_fatal = f"timeout-{time.time()}", f"fatal-{time.time()}"
    assert get(s.port, "/sleep.php?s=3", {"X-Request-ID": rid_timeout})[0] == 504
    assert get(s.port, "/fail.php?kind=fatal", {"X-Request-ID": rid_fatal})[0] == 500
    after = metrics(s)
    for name in ("php_gateway_php_timeouts_total", "php_gateway_php_fatal_errors_total"):
        assert value(after, name) - value(before, name) == 1, name
    wait_for(lambda: records(s, event="request", request_id=rid_fatal), 5, "the fatal's log")
    time.sleep(0.3)  # the interrupted script's own end has been through the log by now
    timeout_lines = [r for r in records(s, request_id=rid_timeout) if r["event"] != "request"]
    assert [(r["event"], r["level"], r["timeout"]) for r in timeout_lines] == [
        ("request timeout", "warning", 1.0)]
    fatal_lines = [r for r in records(s, request_id=rid_fatal) if r["event"] != "request"]
    assert len(fatal_lines) == 1
    [fatal] = fatal_lines
    assert (fatal["level"], fatal["php_level"], fatal["source"]) == ("error", "Fatal error",
                                                                     "php")
    assert fatal["uri"] == "/fail.php?kind=fatal" and HEX32.fullmatch(fatal["trace_id"])
    assert fatal["event"].startswith("Uncaught Error: Call to undefined function")
    assert "Traceback" not in s.logs()


HEX32 = re.compile(r"[0-9a-f]{32}")


def test_php_messages_are_json_lines_of_their_request(one_thread: Server) -> None:
    s = one_thread
    rid = f"logs-{time.time()}"
    assert get(s.port, "/logs.php", {"X-Request-ID": rid})[2] == b"logged"
    lines = wait_for(lambda: [r for r in records(s, request_id=rid, source="php")], 5)
    got = [(r.get("php_level"), r["level"], r["event"].split(" in /")[0]) for r in lines]
    assert got == [(None, "info", "written by error_log"),
                   ("Warning", "warning", "a user warning"),
                   ("Notice", "info", "a user notice"),
                   ("Deprecated", "info", "a user deprecation")]
    assert {(r["uri"], len(r["trace_id"])) for r in lines} == {("/logs.php", 32)}


def test_open_sse_streams_are_a_gauge(one_thread: Server) -> None:
    s = one_thread
    with ThreadPoolExecutor(1) as pool:
        stream = pool.submit(get, s.port, "/sse.php?n=3&ms=400")
        wait_for(lambda: value(metrics(s), "php_gateway_sse_streams") == 1, 5, "an open stream")
        assert stream.result(10)[0] == 200
    assert value(metrics(s), "php_gateway_sse_streams") == 0


def test_server_timing_is_off_by_default(one_thread: Server) -> None:
    status, headers, _ = get(one_thread.port, "/hello.php")
    assert status == 200 and "server-timing" not in headers


# ---------------------------------------------------------------- point 4: OTLP export


def test_spans_are_exported_over_otlp_http(tmp_path: Path, docroot: Path) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with otlp_receiver() as receiver:
        s = start_server(tmp_path, docroot, internal=True, env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # the SDK's batch delay (ms): export at once
            "SERVICE_NAME": "shop"})
        try:
            status, headers, body = get(s.port, "/server.php?x=1", {
                "traceparent": f"00-{trace_id}-{parent}-01", "User-Agent": "otel-test"})
            assert status == 200
            server_span = headers["traceparent"].split("-")[2]
            [span] = receiver.wait_for(lambda sp: sp["span_id"] == server_span)
            [php] = receiver.wait_for(lambda sp: sp["parent_span_id"] == server_span)
        finally:
            s.stop()
    assert (span["trace_id"], span["parent_span_id"], span["name"]) == (trace_id, parent, "GET")
    assert span["kind"] == 2  # SPAN_KIND_SERVER
    attrs = span["attributes"]
    assert {k: attrs[k] for k in ("http.request.method", "url.path", "url.query",
                                  "url.scheme", "network.protocol.version",
                                  "http.response.status_code", "client.address",
                                  "user_agent.original", "server.port")} == {
        "http.request.method": "GET", "url.path": "/server.php", "url.query": "x=1",
        "url.scheme": "http", "network.protocol.version": "1.1",
        "http.response.status_code": 200, "client.address": "127.0.0.1",
        "user_agent.original": "otel-test", "server.port": s.port}
    assert span["resource"]["service.name"] == "shop"
    # PHP's span: a child of the request's, with its wait for a thread; PHP runs inside it
    assert (php["name"], php["trace_id"]) == ("php", trace_id)
    assert php["attributes"]["php.queue_wait_seconds"] >= 0
    assert php["events"] == ["php.thread_started"]
    # PHP runs inside the request; its request shutdown (destructors, shutdown functions)
    # may end after the response has left, as after fastcgi_finish_request()
    assert span["start"] <= php["start"] <= span["end"] and php["start"] <= php["end"]
    server_vars = json.loads(body)["server"]
    assert server_vars["SPAN_ID"] == php["span_id"]
    assert server_vars["TRACEPARENT"] == f"00-{trace_id}-{php['span_id']}-01"
    assert receiver.content_types[0] == "application/x-protobuf"

