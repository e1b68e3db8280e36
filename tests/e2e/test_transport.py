"""The transport (TCP, TLS, HTTP/1.1, HTTP/2) against real clients: curl, httpx, h2load, h2
and raw sockets, on loopback, with a small in-process App (tests/e2e/transport_app.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h11
import httpx
import pytest
import trustme
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame
from server_harness import STACK_IDS, STACKS
from transport_app import ServerThread, TransportApp

from gateway.server.settings import ServerSettings
from gateway.server.tls import create_ssl_context

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SETTINGS = ServerSettings(
    header_timeout=0.6, idle_timeout=1.0, body_timeout=1.0, send_timeout=3.0,
    tls_handshake_timeout=0.6,
    max_body_bytes=1024 * 1024, extra_response_headers=(("x-test-extra", "yes"),),
)
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_ssl(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("cert")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(directory / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    return create_ssl_context(directory / "cert.pem", directory / "key.pem")


@pytest.fixture(scope="module", params=STACKS, ids=STACK_IDS)
def plain(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    settings = _stack(request.param)
    server = ServerThread(TransportApp(), settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=STACKS, ids=STACK_IDS)
def tls(request: pytest.FixtureRequest, server_ssl: ssl.SSLContext) -> Iterator[ServerThread]:
    settings = _stack(request.param)
    server = ServerThread(TransportApp(), settings, server_ssl).start()
    yield server
    server.stop()


@pytest.fixture(params=STACKS, ids=STACK_IDS)
def fresh(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    settings = _stack(request.param)
    server = ServerThread(TransportApp(), settings).start()
    yield server
    server.stop()


def _stack(stack: tuple[str, str]) -> ServerSettings:
    """SETTINGS on one HTTP/1 parser and one HTTP/2 implementation (server_harness.STACKS)."""
    parser, impl = stack
    return ServerSettings(**{**_fields(SETTINGS), "http1_parser": parser, "http2_impl": impl})


def _fields(settings: ServerSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


# -- helpers ---------------------------------------------------------------------------------


def curl(tmp_path: Path, *args: str, data: bytes | None = None) -> tuple[str, int, dict[str, str],
                                                                        bytes, str]:
    """Run curl; return (http_version, status, last header block, body, all header text)."""
    head_file, body_file = tmp_path / "head.txt", tmp_path / "body.bin"
    cmd = ["curl", "-sS", "--max-time", "20", "-D", str(head_file), "-o", str(body_file),
           "-w", "%{http_version} %{http_code}", *args]
    if data is not None:
        (tmp_path / "upload.bin").write_bytes(data)
        cmd[1:1] = ["--data-binary", f"@{tmp_path / 'upload.bin'}"]
    done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()
    version, status = done.stdout.decode().split()
    raw_head = head_file.read_bytes().decode("latin-1")
    last = raw_head.strip().split("\r\n\r\n")[-1]
    headers = {}
    for line in last.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return version, int(status), headers, body_file.read_bytes(), raw_head


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def h11_responses(raw: bytes, count: int) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Parse `count` pipelined responses with h11's client."""
    client = h11.Connection(h11.CLIENT)
    out = []
    client.receive_data(raw)
    for _ in range(count):
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"incomplete response: {event!r}")
        out.append((status, headers, body))
        if client.our_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return out


def h2_socket(server: ServerThread) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = server.connect()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    return sock, client


def h2_get(path: str) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":path", path.encode()), (b":scheme", b"http"),
            (b":authority", b"127.0.0.1")]


def wait_for(predicate: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


# -- real clients: curl ---------------------------------------------------------------------


@needs_curl
def test_curl_http11(plain: ServerThread, tmp_path: Path) -> None:
    version, status, headers, body, _ = curl(tmp_path, "--http1.1", plain.url + "/hello")
    assert (version, status, body) == ("1.1", 200, b"hello\n")
    assert headers["server"] == "php-gateway"
    assert headers["x-test-extra"] == "yes"
    assert headers["content-length"] == "6"
    assert headers["date"].endswith(" GMT")


@needs_curl
def test_curl_upload_echo_with_content_length_and_chunked(plain: ServerThread,
                                                         tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    _, status, headers, body, raw = curl(tmp_path, "--http1.1", plain.url + "/echo", data=payload)
    assert (status, body) == (200, payload)
    assert "100 Continue" not in raw  # curl only expects 100-continue above 1 MiB
    _, status, headers, body, _ = curl(
        tmp_path, "--http1.1", "-H", "Transfer-Encoding: chunked", plain.url + "/echo-stream",
        data=payload,
    )
    assert (status, body) == (200, payload)
    assert headers["transfer-encoding"] == "chunked"


@needs_curl
def test_curl_expect_100_continue(plain: ServerThread, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    _, status, _, body, raw = curl(tmp_path, "--http1.1", "-H", "Expect: 100-continue",
                                   plain.url + "/echo", data=payload)
    assert (status, body) == (200, payload)
    assert raw.startswith("HTTP/1.1 100 Continue\r\n")


@needs_curl
def test_curl_head_and_http10(plain: ServerThread, tmp_path: Path) -> None:
    _, status, headers, out, _ = curl(tmp_path, "--http1.1", "-I", plain.url + "/hello")
    assert (status, headers["content-length"]) == (200, "6")
    assert out.endswith(b"\r\n\r\n") and b"hello" not in out  # curl -I writes the head only
    version, status, headers, body, _ = curl(tmp_path, "--http1.0",
                                             plain.url + "/stream?n=2&delay=0")
    # answered as HTTP/1.1 (like nginx), close-delimited because a 1.0 client has no chunked
    assert (version, status, body) == ("1.1", 200, b"chunk 0\nchunk 1\n")
    assert headers["connection"] == "close" and "transfer-encoding" not in headers


@needs_curl
def test_curl_http2_over_tls(tls: ServerThread, ca_file: str, tmp_path: Path) -> None:
    version, status, headers, body, _ = curl(tmp_path, "--http2", "--cacert", ca_file,
                                             tls.url + "/info?q=1")
    assert (version, status) == ("2", 200)
    info = json.loads(body)
    assert info["http_version"] == "2" and info["tls"] is True and info["scheme"] == "https"
    assert info["target"] == "/info?q=1"
    assert headers["server"] == "php-gateway" and headers["x-test-extra"] == "yes"


@needs_curl
def test_curl_http11_over_tls(tls: ServerThread, ca_file: str, tmp_path: Path) -> None:
    version, status, _, body, _ = curl(tmp_path, "--http1.1", "--cacert", ca_file,
                                       tls.url + "/info")
    assert (version, status) == ("1.1", 200)
    assert json.loads(body)["scheme"] == "https"


@needs_curl
def test_curl_http2_prior_knowledge(plain: ServerThread, tmp_path: Path) -> None:
    payload = os.urandom(150_000)
    version, status, _, body, _ = curl(tmp_path, "--http2-prior-knowledge",
                                       plain.url + "/echo", data=payload)
    assert (version, status, body) == ("2", 200, payload)


@needs_curl
def test_curl_h2c_upgrade(plain: ServerThread, tmp_path: Path) -> None:
    version, status, _, body, raw = curl(tmp_path, "--http2", plain.url + "/info")
    assert (version, status) == ("2", 200)
    assert raw.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    info = json.loads(body)
    assert info["http_version"] == "2" and info["scheme"] == "http"


# -- real clients: httpx and h2load ---------------------------------------------------------


def test_httpx_http2_and_http1(tls: ServerThread, ca_file: str) -> None:
    verify = ssl.create_default_context(cafile=ca_file)
    payload = os.urandom(1_000_000)
    with httpx.Client(http2=True, verify=verify, timeout=10) as client:
        response = client.get(tls.url + "/hello")
        assert response.http_version == "HTTP/2"
        assert (response.status_code, response.content) == (200, b"hello\n")
        echoed = client.post(tls.url + "/echo", content=payload)
        assert echoed.http_version == "HTTP/2" and echoed.content == payload
        streamed = client.get(tls.url + "/stream?n=4&delay=0.01")
        assert streamed.text == "chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
    with httpx.Client(http2=False, verify=verify, timeout=10) as client:
        for _ in range(3):  # keep-alive reuse
            response = client.post(tls.url + "/echo", content=b"abc")
            assert response.http_version == "HTTP/1.1" and response.content == b"abc"


def h2load(*args: str) -> None:
    done = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10", *args],
                          capture_output=True, timeout=40, check=False)
    out = done.stdout.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in out, out
    assert "2000 2xx" in out


@needs_h2load
@pytest.mark.parametrize("protocol", ["h2c", "http/1.1"])
def test_h2load_cleartext(plain: ServerThread, protocol: str) -> None:
    h2load(*(["--h1"] if protocol == "http/1.1" else []), plain.url + "/hello")


def test_http2_unread_bodies_return_the_connection_window(plain: ServerThread) -> None:
    sock, client = h2_socket(plain)
    for i in range(20):  # 20 x 60 KB the app never reads > the 1 MiB connection window
        stream_id = 1 + 2 * i
        client.send_headers(stream_id, [(b":method", b"POST"), *h2_get("/hello")[1:]])
        for _ in range(4):
            client.send_data(stream_id, b"u" * 15_000)  # raises once the window is gone
        sock.sendall(client.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data
            for event in client.receive_data(data):
                ended = ended or (isinstance(event, h2.events.StreamEnded)
                                  and event.stream_id == stream_id)
            sock.sendall(client.data_to_send())
    assert client.outbound_flow_control_window > 0
    sock.close()


@needs_h2load
def test_h2load_tls(tls: ServerThread) -> None:
    h2load(tls.url + "/hello")


# -- raw sockets: limits, timeouts, pipelining ----------------------------------------------


def test_slowloris_head_is_cut_off(plain: ServerThread) -> None:
    sock = plain.connect()
    started = time.monotonic()
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
    time.sleep(0.2)
    sock.sendall(b"X-Slow: 1\r\n")  # still dribbling; header_timeout runs from the first byte
    raw = read_until_closed(sock)
    elapsed = time.monotonic() - started
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close\r\n" in raw
    assert 0.5 < elapsed < 2.0


def test_tls_handshake_timeout(tls: ServerThread) -> None:
    sock = tls.connect()  # TCP only, never a ClientHello
    started = time.monotonic()
    assert read_until_closed(sock) == b""
    assert time.monotonic() - started < 2.0


def test_silent_connection_is_closed(plain: ServerThread) -> None:
    sock = plain.connect()
    started = time.monotonic()
    assert read_until_closed(sock) == b""
    assert time.monotonic() - started < 2.0


def test_idle_keep_alive_is_closed(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection:" not in first
    started = time.monotonic()
    assert read_until_closed(sock) == b""
    assert 0.8 < time.monotonic() - started < 2.5


def test_413_before_the_body_is_sent(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n")
    raw = read_until_closed(sock)  # no body byte was sent
    [(status, headers, body)] = h11_responses(raw, 1)
    assert status == 413
    assert headers[b"connection"] == b"close"
    assert body.startswith(b"413 ")


def test_chunked_body_over_the_limit(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(20):  # 20 x 64 KiB crosses the 1 MiB limit
        try:
            sock.sendall(b"10000\r\n" + b"z" * 0x10000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
    raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 413 ")


def test_malformed_request_gets_400_and_close(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in raw


def test_pipelined_responses_stay_in_order(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(
        b"GET /stream?n=3&delay=0.05 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde"
        b"GET /info HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    responses = h11_responses(read_until_closed(sock), 4)
    assert [r[0] for r in responses] == [200, 200, 200, 200]
    assert responses[0][2] == b"chunk 0\nchunk 1\nchunk 2\n"
    assert responses[1][2] == b"hello\n"
    assert responses[2][2] == b"abcde"
    assert json.loads(responses[3][2])["target"] == "/info"
    assert responses[3][1][b"connection"] == b"close"


def test_100_continue_only_when_the_app_reads(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"hello")
    [(status, _, body)] = h11_responses(sock.recv(65536), 1)
    assert (status, body) == (200, b"hello")
    # an app that answers without reading never asks for the body
    sock.sendall(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"100 Continue" not in raw


def test_body_timeout(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    started = time.monotonic()
    raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert 0.8 < time.monotonic() - started < 2.5


def test_app_failure_is_500(plain: ServerThread) -> None:
    sock = plain.connect()
    sock.sendall(b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\n")
    [(status, headers, _)] = h11_responses(read_until_closed(sock), 1)
    assert status == 500 and headers[b"connection"] == b"close"


def test_http1_slow_reader_is_backpressured(plain: ServerThread) -> None:
    sock = plain.connect(rcvbuf=65536)
    sock.sendall(b"GET /big?size=200000000&tag=h1-slow HTTP/1.1\r\nHost: a\r\n\r\n")
    assert wait_for(lambda: plain.app.progress.get("h1-slow", 0) > 0)
    time.sleep(0.5)
    progress = plain.app.progress["h1-slow"]
    time.sleep(0.3)
    assert plain.app.progress["h1-slow"] == progress  # blocked in send_data
    assert progress < 16 * 1024 * 1024  # socket buffers, not 200 MB in memory
    sock.close()
    assert wait_for(lambda: "h1-slow" in plain.app.cancelled)


# -- HTTP/2 specifics ------------------------------------------------------------------------


def test_http2_slow_reader_blocks_send_data(plain: ServerThread) -> None:
    sock, client = h2_socket(plain)
    client.send_headers(1, h2_get("/big?size=100000000&tag=h2-slow"), end_stream=True)
    sock.sendall(client.data_to_send())
    received = 0
    deadline = time.monotonic() + 0.8
    sock.settimeout(0.1)
    while time.monotonic() < deadline:  # read, but never grant window (no acknowledge)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                received += len(event.data)
        sock.sendall(client.data_to_send())
    progress = plain.app.progress["h2-slow"]
    assert received <= 65535
    assert progress <= 65535 + 65536  # one window plus the piece waiting in send_data
    client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    sock.sendall(client.data_to_send())
    assert wait_for(lambda: "h2-slow" in plain.app.cancelled)
    sock.close()


def test_http2_rapid_reset_gets_enhance_your_calm(plain: ServerThread) -> None:
    sock, client = h2_socket(plain)
    for i in range(150):
        stream_id = 1 + 2 * i
        client.send_headers(stream_id, h2_get(f"/slow?delay=5&tag=rr{i}"), end_stream=True)
        client.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may hang up
        sock.sendall(client.data_to_send())
    terminated = None
    for frame in frames_from(sock):
        if isinstance(frame, GoAwayFrame):
            terminated = frame
    assert terminated is not None
    assert terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    # every app that started was stopped: the PHP pool would get its threads back
    assert wait_for(lambda: plain.server.active_requests == 0)


def test_http2_idle_connection_gets_goaway(plain: ServerThread) -> None:
    sock, client = h2_socket(plain)
    client.send_headers(1, h2_get("/hello"), end_stream=True)
    sock.sendall(client.data_to_send())
    started = time.monotonic()
    kinds = [type(frame).__name__ for frame in frames_from(sock)]
    assert "HeadersFrame" in kinds and kinds[-1] == "GoAwayFrame"
    assert 0.8 < time.monotonic() - started < 2.5  # idle_timeout after the last stream


def frames_from(sock: socket.socket, limit: float = 3.0) -> Iterator[Frame]:
    buffer = b""
    for chunk in iter(lambda: read_chunk(sock, limit), b""):
        buffer += chunk
        while len(buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
            if len(buffer) < 9 + length:
                break
            frame.parse_body(memoryview(buffer[9 : 9 + length]))
            buffer = buffer[9 + length :]
            yield frame


def read_chunk(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    try:
        return sock.recv(65536)
    except (TimeoutError, ConnectionResetError):
        return b""


# -- drain -----------------------------------------------------------------------------------


def test_drain_http1(fresh: ServerThread) -> None:
    idle = fresh.connect()
    idle.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")
    busy = fresh.connect()
    busy.sendall(b"GET /slow?delay=0.5&tag=drain1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert wait_for(lambda: fresh.server.active_requests == 1)
    started = time.monotonic()
    drained = fresh.submit(fresh.server.drain(5.0))
    assert read_until_closed(idle, 1.0) == b""  # idle keep-alive closed at once
    assert time.monotonic() - started < 0.5
    [(status, headers, body)] = h11_responses(read_until_closed(busy), 1)
    assert (status, body) == (200, b"slow done\n")
    assert headers[b"connection"] == b"close"
    drained.result(5)
    assert time.monotonic() - started < 2.0
    with pytest.raises(OSError):
        fresh.connect(timeout=1)
    assert fresh.server.open_connections == 0
    assert fresh.server.requests_served == 2


def test_drain_http2_sends_goaway_and_finishes_streams(fresh: ServerThread) -> None:
    sock, client = h2_socket(fresh)
    client.send_headers(1, h2_get("/slow?delay=0.4&tag=drain2"), end_stream=True)
    sock.sendall(client.data_to_send())
    assert wait_for(lambda: fresh.server.active_requests == 1)
    drained = fresh.submit(fresh.server.drain(5.0))
    goaways, body, ended = [], b"", False
    for frame in frames_from(sock):
        if isinstance(frame, GoAwayFrame):
            goaways.append((frame.last_stream_id, frame.error_code))
        elif isinstance(frame, DataFrame) and frame.stream_id == 1:
            body += frame.data
            ended = ended or "END_STREAM" in frame.flags
        elif isinstance(frame, HeadersFrame) and frame.stream_id == 1:
            assert not body
    assert goaways[0] == (1, 0)  # GOAWAY first, the stream still completes
    assert (body, ended) == (b"slow done\n", True)
    drained.result(5)
    assert "drain2" in fresh.app.finished


def test_drain_timeout_stops_the_rest(fresh: ServerThread) -> None:
    sock = fresh.connect()
    sock.sendall(b"GET /slow?delay=30&tag=stuck HTTP/1.1\r\nHost: a\r\n\r\n")
    assert wait_for(lambda: fresh.server.active_requests == 1)
    started = time.monotonic()
    fresh.run(fresh.server.drain(0.3))
    assert time.monotonic() - started < 1.5
    assert read_until_closed(sock) == b""
    assert wait_for(lambda: "stuck" in fresh.app.cancelled)
