"""The built image, run the way README.md and docs/operations.md say: `make image-test`
builds it (scripts/image-test.sh) and points these tests at it with IMAGE_TEST_ENGINE
(docker or podman) and IMAGE_TEST_IMAGE. Without them (a plain `make test`) they skip:
building the image compiles PHP again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from h3_client import h3_client  # noqa: E402
from server_harness import free_port, free_tcp_udp_port  # noqa: E402

ENGINE = os.environ.get("IMAGE_TEST_ENGINE", "")
IMAGE = os.environ.get("IMAGE_TEST_IMAGE", "")
pytestmark = pytest.mark.skipif(not (ENGINE and IMAGE),
                                reason="run by `make image-test`, which builds the image")

UID = 10001
MAX_IMAGE_BYTES = 250 * 1000 * 1000
# README.md's value: drain (= REQUEST_TIMEOUT, 120 s) + 10
STOP_TIMEOUT = 130
# extensions only one side can have: pcntl is built for the CLI only (PHP's own rule);
# php-gateway is the server's extension (ext/), registered by the SAPI.
CLI_ONLY = {"pcntl"}
SERVER_ONLY = {"php-gateway"}


def engine(*args: str, check: bool = True, timeout: float = 120,
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{ENGINE} {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Container:
    name: str
    http_port: int
    internal_port: int
    tls_port: int | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self, template: str) -> str:
        return engine("inspect", "--format", template, self.name).stdout.strip()

    def remove(self) -> None:
        engine("rm", "-f", self.name, check=False)


def start(*extra: str, tls_port: int | None = None, docroot: Path) -> Container:
    """`run -d` with the README's shape: the document root mounted, the stop timeout set."""
    c = Container(f"php-gateway-test-{uuid.uuid4().hex[:8]}", free_port(), free_port(),
                  tls_port)
    ports = ["-p", f"127.0.0.1:{c.http_port}:8080", "-p", f"127.0.0.1:{c.internal_port}:9090"]
    if tls_port is not None:
        ports += ["-p", f"127.0.0.1:{tls_port}:8443/tcp", "-p", f"127.0.0.1:{tls_port}:8443/udp"]
    c.args = ["run", "-d", "--name", c.name, "--stop-timeout", str(STOP_TIMEOUT), *ports,
              "-v", f"{docroot}:/var/www/html", *extra, IMAGE]
    engine(*c.args)
    deadline = time.monotonic() + 90
    while True:
        if engine("inspect", "--format", "{{.State.Running}}", c.name).stdout.strip() != "true":
            logs = c.logs()
            c.remove()
            raise AssertionError(f"container exited:\n{logs}")
        if "worker ready" in c.logs():
            try:
                if httpx.get(f"http://127.0.0.1:{c.internal_port}/ready", timeout=2).is_success:
                    return c
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            logs = c.logs()
            c.remove()
            raise AssertionError(f"container did not become ready:\n{logs}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """www/ plus the fixtures, readable by the image's uid (the mount keeps host modes)."""
    root = tmp_path_factory.mktemp("image-docroot")
    shutil.copytree(REPO / "www", root, dirs_exist_ok=True)
    for src in [*(REPO / "tests" / "image" / "docroot").iterdir(),
                REPO / "tests" / "php" / "upload.php", REPO / "tests" / "php" / "sleep.php"]:
        shutil.copy2(src, root / src.name)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("image-certs")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    (d / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)  # test material: the container's uid must read the key
    return {"dir": d, "ca": d / "ca.pem"}


@pytest.fixture(scope="module")
def plain(docroot: Path) -> Iterator[Container]:
    """README: docker run --stop-timeout 130 -p 8080:8080 -v ./www:/var/www/html php-gateway"""
    c = start(docroot=docroot)
    yield c
    c.remove()


@pytest.fixture(scope="module")
def read_only(docroot: Path) -> Iterator[Container]:
    """README: ... --read-only --tmpfs /tmp ... (podman would add a /tmp tmpfs by itself;
    switched off, so the image is tested the way docker runs it)."""
    extra = ["--read-only", "--tmpfs", "/tmp"]
    if Path(ENGINE).name == "podman":
        extra.append("--read-only-tmpfs=false")
    c = start(*extra, docroot=docroot)
    yield c
    c.remove()


@pytest.fixture(scope="module")
def tls(docroot: Path, certs: dict[str, Path]) -> Iterator[Container]:
    """README: ... -p 8443:8443/tcp -p 8443:8443/udp -v ./certs:/certs:ro
    -e TLS_CERT=/certs/cert.pem -e TLS_KEY=/certs/key.pem ..."""
    c = start("-v", f"{certs['dir']}:/certs:ro", "-e", "TLS_CERT=/certs/cert.pem",
              "-e", "TLS_KEY=/certs/key.pem", tls_port=free_tcp_udp_port(), docroot=docroot)
    yield c
    c.remove()


@pytest.fixture(params=["plain", "read_only"])
def writable(request: pytest.FixtureRequest) -> Container:
    """The default run and the read-only root filesystem with a tmpfs on /tmp."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def trust(certs: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs["ca"]))


def cli(*args: str, docroot: Path | None = None) -> str:
    mount = ["-v", f"{docroot}:/var/www/html"] if docroot else []
    return engine("run", "--rm", *mount, IMAGE, *args).stdout


# ---------------------------------------------------------------- protocols


def test_http1(plain: Container) -> None:
    r = httpx.get(plain.url + "/", timeout=10)
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    assert "php-gateway is running" in r.text


def test_http2_cleartext_prior_knowledge(plain: Container) -> None:
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        r = client.get(plain.url + "/runtime.php")
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert r.json()["sapi"] != "cli"


def test_tls_http2_and_http1(tls: Container, certs: dict[str, Path]) -> None:
    url = f"https://127.0.0.1:{tls.tls_port}/runtime.php"
    with httpx.Client(http2=True, verify=trust(certs), timeout=10) as client:
        assert client.get(url).http_version == "HTTP/2"
    with httpx.Client(verify=trust(certs), timeout=10) as client:
        r = client.get(url)
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    # HTTP keeps its own port next to the TLS one (TLS_LISTEN_ADDR in the image)
    assert httpx.get(tls.url + "/", timeout=10).status_code == 200


def test_http3_with_mounted_certificate(tls: Container, certs: dict[str, Path]) -> None:
    assert tls.tls_port is not None
    port = tls.tls_port

    async def go() -> tuple[int, bytes]:
        async with h3_client(port, str(certs["ca"])) as client:
            response = await client.request("GET", "/runtime.php")
            return response.status, response.body

    status, body = asyncio.run(go())
    assert status == 200 and json.loads(body)["euid"] == UID
    alt_svc = httpx.get(f"https://127.0.0.1:{port}/", verify=trust(certs),
                        timeout=10).headers.get("alt-svc", "")
    assert "h3" in alt_svc


# ---------------------------------------------------------------- sessions, uploads, temp


def test_session_round_trip(writable: Container) -> None:
    with httpx.Client(base_url=writable.url, timeout=10) as client:
        first = client.get("/session.php").json()
        second = client.get("/session.php").json()
    assert first["started"] is True and first["n"] == 1, first
    assert second["n"] == 2 and second["id"] == first["id"], second
    assert first["save_path"] == "" and first["temp_dir"] == "/tmp"


def test_upload(writable: Container) -> None:
    payload = os.urandom(300_000)
    r = httpx.post(writable.url + "/upload.php", files={"doc": ("a.bin", payload)},
                   data={"k": "v"}, timeout=20)
    assert r.status_code == 200, r.text
    doc = r.json()["doc"]
    assert doc["error"] == 0 and doc["size"] == len(payload)
    assert doc["is_uploaded"] and doc["moved"], doc
    import hashlib

    assert doc["target_sha256"] == hashlib.sha256(payload).hexdigest()
    assert r.json()["_fake_moved"] is False


def test_temp_dir_and_non_root(writable: Container) -> None:
    info = httpx.get(writable.url + "/runtime.php", timeout=10).json()
    assert info["euid"] == UID and info["egid"] == UID
    assert info["temp_dir"] == "/tmp" and info["temp_file_ok"] is True
    assert writable.inspect("{{.Config.User}}") == f"{UID}:{UID}"


def test_read_only_root_is_read_only(read_only: Container) -> None:
    result = engine("exec", read_only.name, "sh", "-c", "touch /opt/x || echo refused",
                    check=False)
    assert "refused" in result.stdout


def test_runs_under_any_uid(docroot: Path) -> None:
    """docs/operations.md: `--user` of the app files' owner works (only /tmp is written)."""
    c = start("--user", "12345:12345", "--read-only", "--tmpfs", "/tmp",
              *(["--read-only-tmpfs=false"] if Path(ENGINE).name == "podman" else []),
              docroot=docroot)
    try:
        with httpx.Client(base_url=c.url, timeout=10) as client:
            assert client.get("/session.php").json()["n"] == 1
            info = client.get("/runtime.php").json()
        assert info["euid"] == 12345 and info["temp_file_ok"] is True
    finally:
        c.remove()


# ---------------------------------------------------------------- health, logs


def test_health_and_healthcheck(plain: Container) -> None:
    base = f"http://127.0.0.1:{plain.internal_port}"
    assert httpx.get(base + "/health", timeout=5).status_code == 200
    assert httpx.get(base + "/ready", timeout=5).json()["ready"] is True
    if Path(ENGINE).name == "podman":  # no systemd timer here: run the HEALTHCHECK once
        engine("healthcheck", "run", plain.name)
    else:
        deadline = time.monotonic() + 60
        while plain.inspect("{{.State.Health.Status}}") != "healthy":
            assert time.monotonic() < deadline, plain.inspect("{{json .State.Health}}")
            time.sleep(1)


def listening_line(c: Container) -> str:
    lines = [ln for ln in c.logs().splitlines() if '"listening"' in ln or "listening" in ln]
    assert lines, c.logs()
    return lines[0]


def test_start_up_log_names_only_listening_addresses(plain: Container, tls: Container) -> None:
    line = listening_line(plain)
    assert "0.0.0.0:8080" in line and "0.0.0.0:9090" in line
    assert "8443" not in line and "https" not in line and "http3" not in line, line
    line = listening_line(tls)
    assert "0.0.0.0:8080" in line and "0.0.0.0:8443" in line and "8443/udp" in line, line


# ---------------------------------------------------------------- the php CLI


def test_php_cli_is_the_same_build(plain: Container, docroot: Path) -> None:
    version = cli("php", "-v")
    assert version.startswith("PHP 8.4.") and "ZTS" in version, version
    served = httpx.get(plain.url + "/runtime.php", timeout=10).json()
    # the `php artisan` shape: a script by relative path, from the mounted app
    ran = json.loads(cli("php", "runtime.php", docroot=docroot))
    assert ran["sapi"] == "cli" and ran["cwd"] == "/var/www/html"
    assert ran["version"] == served["version"] and ran["zts"] == served["zts"] == 1
    assert ran["euid"] == UID and ran["temp_file_ok"] is True
    for key in ("session_save_path", "timezone", "zend_extensions"):
        assert ran[key] == served[key], key
    cli_ext, server_ext = set(ran["extensions"]), set(served["extensions"])
    assert cli_ext - server_ext <= CLI_ONLY and server_ext - cli_ext <= SERVER_ONLY, (
        cli_ext ^ server_ext)
    modules = cli("php", "-m")
    assert "Zend OPcache" in modules and "intl" in modules and "pdo_pgsql" in modules
    assert cli("which", "php").strip() == "/opt/php-gateway/bin/php"


def test_flags_after_the_image_name_go_to_php_gateway() -> None:
    result = engine("run", "--rm", IMAGE, "--php-workers", "nope", check=False)
    assert result.returncode == 2 and "PHP_WORKERS" in result.stderr, result


# ---------------------------------------------------------------- size


# What the official debian images leave out of every package they install
# (/etc/dpkg/dpkg.cfg.d/docker). A base made otherwise (this project's build machines have a
# local debootstrap stand-in for debian:bookworm-slim) carries them in its own layer and in
# every apt layer above it, and has a few packages more (tzdata, openssl).
DPKG_EXCLUDED = ("/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/locale",
                 "/usr/share/groff", "/usr/share/lintian", "/usr/share/linda")
# `docker image ls` of the official debian:bookworm-slim (amd64)
OFFICIAL_BASE_BYTES = 74_800_000


def image_bytes(image: str) -> int:
    return int(engine("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def excluded_bytes(image: str) -> int:
    du = engine("run", "--rm", "--user", "0", "--entrypoint", "du", image, "-scb",
                *DPKG_EXCLUDED, check=False).stdout
    return int(du.strip().splitlines()[-1].split()[0])


def test_size_and_stripped_binaries() -> None:
    size = image_bytes(IMAGE)
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert match
    base = match.group(1)
    base_size, base_excluded = image_bytes(base), excluded_bytes(base)
    # what the Dockerfile adds, as apt adds it on the official base (no docs, no locales)
    added = size - base_size - (excluded_bytes(IMAGE) - base_excluded)
    # on the official base (nothing excluded there) the image itself is the measure
    total = size if base_excluded < 5_000_000 else OFFICIAL_BASE_BYTES + added
    print(f"image size: {size / 1e6:.1f} MB on a {base_size / 1e6:.1f} MB {base}; the "
          f"Dockerfile adds {added / 1e6:.1f} MB without docs and locales; on the official "
          f"base: {total / 1e6:.1f} MB")
    assert total <= MAX_IMAGE_BYTES, f"{total / 1e6:.1f} MB"
    check = r"""
import os, struct
bad, leftovers = [], []

def section_names(data):
    # ELF64 little-endian (x86-64, arm64): the names in the section header string table
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
    strtab = header(shstrndx)
    table = data[strtab[4]:strtab[4] + strtab[5]]
    for i in range(shnum):
        start = header(i)[0]
        yield table[start:table.index(b"\0", start)].decode()

for top in ("/opt/php-gateway", "/opt/venv"):
    for root, dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            source = top != "/opt/venv" and name.endswith((".h", ".c"))
            if source or name.endswith((".a", ".la", ".o")):
                leftovers.append(path)
                continue
            with open(path, "rb") as f:
                data = f.read()
            if data[:4] == b"\x7fELF" and any(
                    n == ".symtab" or n.startswith(".debug") for n in section_names(data)):
                bad.append(path)
print(len(bad), len(leftovers))
print("\n".join(bad + leftovers))
"""
    out = engine("run", "--rm", "--entrypoint", "python", IMAGE, "-c", check).stdout
    assert out.partition("\n")[0].strip() == "0 0", out


# ---------------------------------------------------------------- stop


def test_sigterm_drains_a_request_in_flight(docroot: Path) -> None:
    """`docker stop` with the README's --stop-timeout: the in-flight request completes and
    the container exits 0, not 137 (SIGKILL)."""
    c = start(docroot=docroot)
    try:
        result: dict[str, httpx.Response | BaseException] = {}

        def request() -> None:
            try:
                result["r"] = httpx.get(c.url + "/sleep.php?s=12", timeout=60)
            except BaseException as exc:  # reported below
                result["r"] = exc

        thread = threading.Thread(target=request)
        thread.start()
        time.sleep(2)
        t0 = time.monotonic()
        engine("stop", c.name, timeout=STOP_TIMEOUT + 30)  # no -t: the container's own timeout
        took = time.monotonic() - t0
        thread.join(30)
        r = result["r"]
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 200 and r.text == "slept 12"
        # longer than docker's default 10 s stop timeout, shorter than the container's
        assert 8 < took < STOP_TIMEOUT, took
        assert c.inspect("{{.State.ExitCode}}") == "0"
        logs = c.logs()
        assert "draining" in logs and "killing" not in logs, logs
        assert re.search(r"worker stopped", logs), logs
    finally:
        c.remove()
