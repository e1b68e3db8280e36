"""HTTP/3 end to end: the QUIC server on a real UDP socket (127.0.0.1, free port, trustme
certificate) serving tests/e2e/h3_app.py, driven by two independent QUIC stacks:
aioquic's HTTP/3 client (h3_client.py) and gtlsclient from Debian's ngtcp2-client.

gtlsclient (ngtcp2 0.12 examples) speaks QUIC v1 + h3 and does not verify the server
certificate; the aioquic client verifies it against the trustme CA."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioquic.h3.connection import ErrorCode
from h3_app import H3TestApp, pattern, pattern_sha256
from h3_client import h3_client

from gateway.server.h3_connection import MAX_SEND_PIECE
from gateway.server.quic import QuicServer, QuicSettings, start_quic_server

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
TEN_MB = 10 * MIB


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("h3e2e")
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "chain.pem"))  # key + chain
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"cert": str(d / "chain.pem"), "ca": str(d / "ca.pem")}


@dataclass
class Running:
    server: QuicServer
    app: H3TestApp
    port: int
    quic: QuicSettings


async def _start(certs: dict[str, str], quic: QuicSettings) -> Running:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    app = H3TestApp()
    server = await start_quic_server(sock, app, certfile=certs["cert"], quic=quic)
    return Running(server, app, sock.getsockname()[1], quic)


@pytest.fixture
async def h3(certs: dict[str, str]) -> AsyncIterator[Running]:
    running = await _start(certs, QuicSettings())
    yield running
    running.server.close()


async def gtlsclient(port: int, urls: list[str], download: Path, *extra: str,
                     timeout: float = 60, quiet: bool = True) -> tuple[int, str]:
    if shutil.which("gtlsclient") is None:
        pytest.fail("gtlsclient is missing: apt-get install -y ngtcp2-client")
    download.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        "gtlsclient", *(["-q"] if quiet else ["--no-quic-dump", "--no-http-dump"]),
        "--exit-on-all-streams-close", "--download", str(download),
        *extra, "127.0.0.1", str(port), *[f"https://127.0.0.1:{port}{u}" for u in urls],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


# -- aioquic's client ----------------------------------------------------------------------


async def test_aioquic_client_downloads_10_mb_intact(h3: Running, certs: dict[str, str]) -> None:
    async with h3_client(h3.port, certs["ca"]) as client:
        hello = await client.request("GET", "/hello")
        big = await client.request("GET", f"/big/{TEN_MB}")
    assert hello.status == 200 and hello.body == b"hello over h3\n"
    assert hello.header(b"server") == b"php-gateway" and hello.header(b"date")
    assert big.status == 200
    assert big.header(b"content-length") == str(TEN_MB).encode()
    assert len(big.body) == TEN_MB
    assert hashlib.sha256(big.body).hexdigest() == pattern_sha256(TEN_MB)


async def test_aioquic_client_uploads_10_mb_intact(h3: Running, certs: dict[str, str]) -> None:
    upload = pattern(TEN_MB)[::-1]  # not the download's bytes
    echo_body = pattern(2 * MIB)
    async with h3_client(h3.port, certs["ca"]) as client:
        uploaded, echoed = await asyncio.gather(
            client.request("POST", "/upload", body=upload,
                           headers=[(b"content-length", str(len(upload)).encode())]),
            client.request("POST", "/echo", body=echo_body),
        )
    assert uploaded.status == 200
    assert json.loads(uploaded.body) == {"length": TEN_MB,
                                         "sha256": hashlib.sha256(upload).hexdigest()}
    assert echoed.status == 200 and echoed.body == echo_body


async def test_aioquic_client_streams_and_multiplexes(h3: Running, certs: dict[str, str]) -> None:
    async with h3_client(h3.port, certs["ca"]) as client:
        slow, *hellos = await asyncio.gather(
            client.request("GET", "/slow/10"),
            *[client.request("GET", "/hello") for _ in range(20)],
        )
        missing = await client.request("GET", "/nothing-here")
    assert slow.status == 200
    assert slow.body == b"".join(bytes([65 + i]) * 1000 for i in range(10))
    assert [(r.status, r.body) for r in hellos] == [(200, b"hello over h3\n")] * 20
    assert missing.status == 404 and missing.body == b"not found\n"


async def test_slow_reader_holds_the_producer_back(h3: Running, certs: dict[str, str]) -> None:
    window = 64 * 1024
    total = 8 * MIB
    async with h3_client(h3.port, certs["ca"], max_stream_data=window, max_data=MIB) as client:
        client.pause_reading()
        sid, response = client.start_request("GET", f"/produce/slow/{total}")
        progress = None
        for _ in range(200):  # until the app sits in send_data and stops producing
            await asyncio.sleep(0.02)
            progress = h3.app.produced.get("slow")
            if progress is not None and progress.blocked and progress.produced:
                before = progress.produced
                await asyncio.sleep(0.5)
                if progress.produced == before:
                    break
        assert progress is not None and progress.blocked and not progress.done
        # the producer got no further than the client's window, our high-water mark and
        # one piece of its last write: the rest of the 8 MiB was never produced
        assert progress.produced <= window + h3.quic.send_high_water + MAX_SEND_PIECE
        assert client.received(sid) <= window
        client.resume_reading()
        reply = await asyncio.wait_for(response, 30)
    assert reply.status == 200 and progress.done and progress.produced == total
    assert hashlib.sha256(reply.body).hexdigest() == pattern_sha256(total)


async def test_drain_sends_goaway_and_lets_requests_finish(
    h3: Running, certs: dict[str, str]
) -> None:
    async with h3_client(h3.port, certs["ca"]) as client:
        _, slow = client.start_request("GET", "/slow/20")
        await asyncio.sleep(0.2)
        drain = asyncio.ensure_future(h3.server.drain(timeout=10))
        reply = await asyncio.wait_for(slow, 10)
        await asyncio.wait_for(drain, 10)
        for _ in range(100):
            if client.terminated is not None:
                break
            await asyncio.sleep(0.02)
    assert reply.status == 200 and len(reply.body) == 20 * 1000
    assert client.terminated is not None
    assert client.terminated.error_code == ErrorCode.H3_NO_ERROR


# -- gtlsclient (ngtcp2, a different QUIC stack) ----------------------------------------------


async def test_gtlsclient_downloads_intact(h3: Running, tmp_path: Path) -> None:
    rc, out = await gtlsclient(h3.port, ["/hello", f"/big/{TEN_MB}", "/slow/10"], tmp_path)
    assert rc == 0, out
    assert (tmp_path / "hello").read_bytes() == b"hello over h3\n"
    assert hashlib.sha256((tmp_path / str(TEN_MB)).read_bytes()).hexdigest() == (
        pattern_sha256(TEN_MB)
    )
    assert (tmp_path / "10").read_bytes() == b"".join(bytes([65 + i]) * 1000 for i in range(10))
    assert sorted(t for _, t in h3.app.requests) == sorted(
        [b"/hello", f"/big/{TEN_MB}".encode(), b"/slow/10"]
    )


async def test_gtlsclient_head_gets_headers_only(h3: Running, tmp_path: Path) -> None:
    rc, out = await gtlsclient(h3.port, ["/hello"], tmp_path, "-m", "HEAD", quiet=False)
    assert rc == 0, out
    assert "[:status: 200]" in out and "[content-length: 14]" in out  # the GET's length
    assert (tmp_path / "hello").read_bytes() == b""


async def test_gtlsclient_with_5_percent_loss_each_way(h3: Running, tmp_path: Path) -> None:
    rc, out = await gtlsclient(h3.port, [f"/big/{TEN_MB}"], tmp_path,
                               "--tx-loss=0.05", "--rx-loss=0.05", timeout=75, quiet=False)
    assert rc == 0, out[-3000:]
    # the loss really happened, both ways (about 5% of ~9000 datagrams in, of ACKs out)
    assert out.count("** Simulated incoming packet loss **") > 100
    assert out.count("** Simulated outgoing packet loss **") > 20
    body = (tmp_path / str(TEN_MB)).read_bytes()
    assert len(body) == TEN_MB
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(TEN_MB)


async def test_gtlsclient_upload_intact(h3: Running, tmp_path: Path) -> None:
    upload = pattern(3 * MIB)[::-1]
    (tmp_path / "up.bin").write_bytes(upload)
    rc, out = await gtlsclient(h3.port, ["/upload"], tmp_path / "dl",
                               "-m", "POST", "-d", str(tmp_path / "up.bin"))
    assert rc == 0, out
    assert json.loads((tmp_path / "dl" / "upload").read_bytes()) == {
        "length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()
    }


async def test_gtlsclient_through_a_retry(certs: dict[str, str], tmp_path: Path) -> None:
    running = await _start(certs, QuicSettings(retry="on"))
    try:
        rc, out = await gtlsclient(running.port, ["/hello", f"/big/{MIB}"], tmp_path)
    finally:
        running.server.close()
    assert rc == 0, out
    assert running.server.retries_sent >= 1
    assert (tmp_path / "hello").read_bytes() == b"hello over h3\n"
    assert hashlib.sha256((tmp_path / str(MIB)).read_bytes()).hexdigest() == pattern_sha256(MIB)
