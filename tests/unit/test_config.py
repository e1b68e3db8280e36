"""Every option from flag and environment, precedence, and refusals that name the option."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway import config as config_module
from gateway.config import (
    DEFAULT_PHP_INI,
    OPTIONS,
    AccelRoot,
    Config,
    ConfigError,
    HostPort,
    build_parser,
    load_config,
    options_markdown,
)
from gateway.cpus import available_cpus
from gateway.observability.otel_export import traces_url

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _identity() -> tuple[bytes, bytes, bytes]:
    """A certificate, its key and an unrelated key: made once, written per test."""
    ca = trustme.CA()
    leaf, other = ca.issue_cert("localhost"), ca.issue_cert("other.example")
    return (leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(),
            other.private_key_pem.bytes())


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "root": tmp_path / "root",
        "errors": tmp_path / "errors",
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "ini": tmp_path / "php.ini",
        "worker": tmp_path / "root" / "app.php",  # a worker script inside the root
        "outside": tmp_path / "worker.php",  # and one beside it
    }
    paths["root"].mkdir()
    paths["errors"].mkdir()
    cert, key, other_key = _identity()
    paths["cert"].write_bytes(cert)
    paths["key"].write_bytes(key)
    paths["other_key"] = tmp_path / "other-key.pem"
    paths["other_key"].write_bytes(other_key)
    paths["ini"].write_text("x\n")
    paths["worker"].write_text("<?php\n")
    paths["outside"].write_text("<?php\n")
    return paths


def load(files: dict[str, Path], argv: list[str] | None = None,
         env: dict[str, str] | None = None) -> Config:
    base = {"DOCUMENT_ROOT": str(files["root"])}
    return load_config(argv or [], {**base, **(env or {})})


# (ENV, text, attribute, expected) — text may name a fixture path as {root} etc.
CASES: list[tuple[str, str, str, Any]] = [
    ("LISTEN_ADDR", "127.0.0.1:9000", "listen_addr", HostPort("127.0.0.1", 9000)),
    ("LISTEN_ADDR", "[::1]:8443", "listen_addr", HostPort("::1", 8443)),
    ("LISTEN_ADDR", ":81", "listen_addr", HostPort("0.0.0.0", 81)),
    ("LISTEN_ADDR", "localhost:0", "listen_addr", HostPort("localhost", 0)),
    ("TLS_LISTEN_ADDR", "0.0.0.0:8443", "tls_listen_addr", HostPort("0.0.0.0", 8443)),
    ("PROCESSES", "2", "processes", 2),
    ("PROCESSES", "1", "processes", 1),
    ("PHP_WORKERS", "7", "php_workers", 7),
    ("QUEUE_CAPACITY", "55", "queue_capacity", 55),
    ("DOCUMENT_ROOT", "{root}", "document_root", "{root}"),
    ("INDEX_FILE", "index.php", "index_file", "index.php"),
    ("ROUTING", "try-files", "routing", "try-files"),
    ("ROUTING", "AUTO", "routing", "traditional"),
    ("SYMLINKS", "inside-root", "symlinks", "inside-root"),
    ("X_SENDFILE_ROOTS", "{root}, {errors}", "x_sendfile_roots",
     lambda f: (f["root"], f["errors"])),
    ("X_ACCEL_ROOT", "{root}", "x_accel_root", lambda f: AccelRoot("/", f["root"])),
    ("X_ACCEL_ROOT", "/protected/={errors}", "x_accel_root",
     lambda f: AccelRoot("/protected/", f["errors"])),
    ("WORKER_SCRIPT", "{worker}", "worker_script", "{worker}"),
    ("WORKER_MAX_REQUESTS", "0", "worker_max_requests", 0),  # others need WORKER_SCRIPT: below
    ("PHP_MAX_REQUESTS", "500", "php_max_requests", 500),
    ("SERVER_NAME", "www.example.com", "server_name", "www.example.com"),
    ("INTERNAL_ADDR", "127.0.0.1:9090", "internal_addr", HostPort("127.0.0.1", 9090)),
    ("ERROR_PAGES_DIR", "{errors}", "error_pages_dir", "{errors}"),
    ("DRAIN_TIMEOUT_SECS", "12", "drain_timeout_secs", 12.0),
    ("DRAIN_TIMEOUT_SECS", "0", "drain_timeout_secs", 0.0),
    ("STATIC_CACHE_TTL", "2h", "static_cache_ttl", 7200),
    ("STATIC_CACHE_TTL", "1w", "static_cache_ttl", 604800),
    ("STATIC_CACHE_TTL", "1y", "static_cache_ttl", 31536000),
    ("STATIC_CACHE_TTL", "90", "static_cache_ttl", 90),
    ("STATIC_CACHE_TTL", "1h30m", "static_cache_ttl", 5400),
    ("STATIC_CACHE_TTL", "off", "static_cache_ttl", None),
    ("REQUEST_TIMEOUT", "30s", "request_timeout", 30.0),
    ("REQUEST_TIMEOUT", "OFF", "request_timeout", None),
    ("REQUEST_HEARTBEAT_MAX", "1h", "request_heartbeat_max", 3600.0),
    ("REQUEST_HEARTBEAT_MAX", "off", "request_heartbeat_max", None),
    ("SSE_TIMEOUT", "1h", "sse_timeout", 3600.0),
    ("HEADER_TIMEOUT_SECS", "2.5", "header_timeout_secs", 2.5),
    ("BODY_TIMEOUT_SECS", "9", "body_timeout_secs", 9.0),
    ("SEND_TIMEOUT_SECS", "20", "send_timeout_secs", 20.0),
    ("REQUEST_BUFFERING", "off", "request_buffering", False),
    ("RESPONSE_BUFFERING", "no", "response_buffering", False),
    ("BUFFER_MEMORY", "8M", "buffer_memory", 8 * 1024 * 1024),
    ("IDLE_TIMEOUT_SECS", "15", "idle_timeout_secs", 15.0),
    ("TLS_HANDSHAKE_TIMEOUT_SECS", "3", "tls_handshake_timeout_secs", 3.0),
    ("ACCESS_LOG", "yes", "access_log", True),
    ("ACCESS_LOG", "1", "access_log", True),
    ("ACCESS_LOG", "Off", "access_log", False),
    ("METRICS", "off", "metrics", False),
    ("SERVER_TIMING", "on", "server_timing", True),
    ("RATE_LIMIT", "100", "rate_limit", 100),
    ("RATE_WINDOW", "10", "rate_window", 10),
    ("RATE_LIMIT_MAX_CLIENTS", "5000", "rate_limit_max_clients", 5000),
    ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1 ::1", "trusted_proxies",
     (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"),
      ipaddress.ip_network("::1/128"))),
    ("COMPRESSION", "off", "compression", False),
    ("COMPRESSION_ENCODINGS", "gzip, ZSTD", "compression_encodings", ("gzip", "zstd")),
    ("COMPRESSION_MIN_SIZE", "1K", "compression_min_size", 1024),
    ("COMPRESSION_TYPES", "text/html application/*+json", "compression_types",
     ("text/html", "application/*+json")),
    ("HTTP1_PARSER", "h11", "http1_parser", "h11"),
    ("HTTP2_IMPL", "h2", "http2_impl", "h2"),
    ("HTTP2_IMPL", "nghttp2", "http2_impl", "nghttp2"),
    ("MAX_CONNECTIONS", "100", "max_connections", 100),
    ("MAX_BODY_SIZE", "10M", "max_body_size", 10 * 1024 * 1024),
    ("MAX_BODY_SIZE", "0", "max_body_size", 0),
    ("MAX_BODY_SIZE", "1g", "max_body_size", 1024**3),
    ("MAX_HEADER_SIZE", "32K", "max_header_size", 32768),
    ("MAX_REQUEST_LINE", "4096", "max_request_line", 4096),
    ("H2_MAX_CONCURRENT_STREAMS", "250", "h2_max_concurrent_streams", 250),
    ("H2_MAX_HEADER_LIST_SIZE", "128KiB", "h2_max_header_list_size", 131072),
    ("PHP_INI", "{ini}", "php_ini", "{ini}"),
    ("PHP_INI_SET", "memory_limit=256M", "php_ini_set", (("memory_limit", "256M"),)),
    ("OTEL_TRACES_EXPORTER", "otlp", "otel_traces_exporter", "otlp"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/protobuf", "otel_exporter_otlp_protocol",
     "http/protobuf"),
    ("OTEL_SERVICE_NAME", "shop-traces", "otel_service_name", "shop-traces"),
    ("LOG_LEVEL", "WARN", "log_level", "warning"),
    ("LOG_LEVEL", "debug", "log_level", "debug"),
    ("SERVICE_NAME", "shop", "service_name", "shop"),
]


def _fill(value: Any, files: dict[str, Path]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return files[value[1:-1]]
    if callable(value):  # a value built from the fixture paths
        return value(files)
    return value


def _text(text: str, files: dict[str, Path]) -> str:
    return text.format(**{k: str(v) for k, v in files.items()})


def test_cases_cover_every_option() -> None:
    covered = {env for env, *_ in CASES} | {"TLS_CERT", "TLS_KEY", "HTTP3", "RATE_BURST",
                                            "OTEL_EXPORTER_OTLP_ENDPOINT",
                                            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}
    assert covered == {opt.env for opt in OPTIONS}


def test_options_match_config_fields() -> None:
    assert [opt.field for opt in OPTIONS] == list(Config.__dataclass_fields__)


@pytest.mark.parametrize(("env", "text", "attr", "expected"), CASES)
def test_option_from_env(files: dict[str, Path], env: str, text: str, attr: str,
                         expected: Any) -> None:
    config = load(files, env={env: _text(text, files)})
    assert getattr(config, attr) == _fill(expected, files)


@pytest.mark.parametrize(("env", "text", "attr", "expected"), CASES)
def test_option_from_flag(files: dict[str, Path], env: str, text: str, attr: str,
                          expected: Any) -> None:
    flag = "--" + env.lower().replace("_", "-")
    config = load(files, argv=[flag, _text(text, files)])
    assert getattr(config, attr) == _fill(expected, files)


def test_defaults(files: dict[str, Path]) -> None:
    c = load(files)
    assert c.listen_addr == HostPort("0.0.0.0", 8080)
    assert (c.processes, c.php_workers) == (available_cpus(), 2 * available_cpus())
    assert c.queue_capacity == c.php_workers * 100
    assert c.index_file is None and c.internal_addr is None and c.error_pages_dir is None
    assert (c.drain_timeout_secs, c.header_timeout_secs, c.idle_timeout_secs) == (120, 5, 60)
    assert (c.body_timeout_secs, c.tls_handshake_timeout_secs) == (60, 10)
    assert c.static_cache_ttl == 86400
    assert (c.request_timeout, c.sse_timeout) == (120, 1800)
    assert c.access_log is False and c.compression is True and c.http3 is False
    assert (c.rate_limit, c.rate_window, c.rate_burst) == (0, 60, 0)
    assert c.rate_limit_max_clients == 100_000
    assert c.max_body_size == 64 * 1024**2
    assert (c.max_header_size, c.max_request_line) == (16384, 8192)
    assert (c.h2_max_concurrent_streams, c.h2_max_header_list_size) == (100, 65536)
    assert c.php_ini == DEFAULT_PHP_INI == REPO / "gateway" / "php" / "php.ini"
    assert c.php_ini_set == () and c.trusted_proxies == ()
    assert (c.log_level, c.service_name, c.http1_parser) == ("info", "php-gateway", "httptools")
    assert c.http2_impl == "nghttp2"
    assert c.tls_cert is None


def test_default_document_root_is_var_www_html() -> None:
    if Path("/var/www/html").is_dir():
        assert load_config([], {}).document_root == Path("/var/www/html")
    else:
        with pytest.raises(ConfigError, match="--document-root / DOCUMENT_ROOT"):
            load_config([], {})


def test_flag_wins_over_env(files: dict[str, Path]) -> None:
    c = load(files, ["--php-workers", "3", "--log-level", "error", "--index-file", ""],
             {"PHP_WORKERS": "9", "LOG_LEVEL": "debug", "INDEX_FILE": "index.php"})
    assert (c.php_workers, c.log_level, c.index_file) == (3, "error", None)


def test_empty_env_counts_as_unset(files: dict[str, Path]) -> None:
    c = load(files, env={"PHP_WORKERS": "", "LISTEN_ADDR": " ", "STATIC_CACHE_TTL": ""})
    assert c.listen_addr == HostPort("0.0.0.0", 8080)
    assert c.static_cache_ttl == 86400


def test_unknown_env_vars_are_ignored(files: dict[str, Path]) -> None:
    assert load(files, env={"PHP_WORKERZ": "abc", "PATH": "/bin"}).service_name == "php-gateway"


def test_bool_flag_without_value_means_on(files: dict[str, Path]) -> None:
    assert load(files, ["--access-log"]).access_log is True
    assert load(files, ["--access-log", "off"], {"ACCESS_LOG": "1"}).access_log is False


def test_php_ini_set_merges_env_then_flags(files: dict[str, Path]) -> None:
    c = load(files, ["--php-ini-set", "memory_limit=512M", "--php-ini-set",
                     "error_log=/tmp/a;b"],
             {"PHP_INI_SET": "memory_limit=128M; date.timezone=UTC\nopcache.enable = 0"})
    assert c.php_ini_set == (("memory_limit", "512M"), ("date.timezone", "UTC"),
                             ("opcache.enable", "0"), ("error_log", "/tmp/a;b"))


def test_workers_and_queue_split_across_processes(files: dict[str, Path]) -> None:
    c = load(files, ["--processes", "2", "--php-workers", "5", "--queue-capacity", "0"])
    assert [c.php_workers_for(i) for i in range(2)] == [3, 2]
    assert c.queue_capacity == 500
    assert [c.queue_capacity_for(i) for i in range(2)] == [250, 250]


def test_processes_auto_follows_the_cpus_and_php_workers(files: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """PROCESSES=auto (the default) is a process per usable CPU, never more processes than
    PHP threads; PHP_WORKERS=0 is two threads per CPU."""
    monkeypatch.setattr(config_module, "available_cpus", lambda: 3)
    c = load(files)
    assert (c.processes, c.php_workers) == (3, 6)
    assert (load(files, ["--php-workers", "2"]).processes, load(files, env={
        "PROCESSES": "AUTO", "PHP_WORKERS": "8"}).processes) == (2, 3)
    assert load(files, ["--processes", "5"]).php_workers == 6
    assert load(files, ["--processes", "7"]).php_workers == 7  # one thread each, at least


def test_available_cpus_honours_affinity_and_the_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(tmp_path / "missing") == affinity
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("150000 100000\n")  # docker run --cpus 1.5
    assert available_cpus(cpu_max) == min(affinity, 2)
    cpu_max.write_text("10000 100000\n")
    assert available_cpus(cpu_max) == 1


def test_tls_enables_http3_by_default(files: dict[str, Path]) -> None:
    c = load(files, env={"TLS_CERT": str(files["cert"]), "TLS_KEY": str(files["key"])})
    assert c.tls and c.http3
    assert (c.tls_cert, c.tls_key) == (files["cert"], files["key"])
    off = load(files, ["--http3", "off", "--tls-cert", str(files["cert"]),
                       "--tls-key", str(files["key"])])
    assert off.tls and not off.http3


def test_relative_document_root_becomes_absolute(files: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files["root"].parent)
    assert load(files, ["--document-root", "root"]).document_root == files["root"]


BAD: list[tuple[str, str, str]] = [
    ("LISTEN_ADDR", "8080", "host:port"),
    ("LISTEN_ADDR", "host:99999", "port"),
    ("LISTEN_ADDR", "[nothex]:80", "IPv6"),
    ("LISTEN_ADDR", "::1:80", "host:port"),
    ("INTERNAL_ADDR", "nope", "host:port"),
    ("PROCESSES", "0", "positive integer, or auto"),
    ("PROCESSES", "many", "or auto"),
    ("PHP_WORKERS", "abc", "non-negative integer"),
    ("PHP_WORKERS", "-1", "non-negative integer"),
    ("QUEUE_CAPACITY", "1.5", "integer"),
    ("DOCUMENT_ROOT", "/nonexistent/dir", "does not exist"),
    ("DOCUMENT_ROOT", "{ini}", "not a directory"),
    ("INDEX_FILE", "public/index.php", "file name"),
    ("INDEX_FILE", ".env", "file name"),
    ("ROUTING", "nginx", "auto, traditional, front-controller, try-files, spa"),
    ("SYMLINKS", "off", "follow, inside-root"),
    ("WORKER_SCRIPT", "/nonexistent/worker.php", "does not exist"),
    ("WORKER_MAX_REQUESTS", "-1", "non-negative integer"),
    ("WORKER_MAX_REQUESTS", "100", "needs WORKER_SCRIPT"),
    ("PHP_MAX_REQUESTS", "many", "non-negative integer"),
    ("X_SENDFILE_ROOTS", "relative/dir", "not an absolute path"),
    ("X_SENDFILE_ROOTS", "{root}, /nonexistent/files", "does not exist"),
    ("X_ACCEL_ROOT", "/nonexistent/private", "does not exist"),
    ("X_ACCEL_ROOT", "protected/={root}", "/uri-prefix/=directory"),
    ("SERVER_NAME", "a b", "host name"),
    ("SERVER_NAME", "example.com:80", "no port"),
    ("ERROR_PAGES_DIR", "/nonexistent/errors", "does not exist"),
    ("DRAIN_TIMEOUT_SECS", "-1", "seconds"),
    ("HEADER_TIMEOUT_SECS", "0", "> 0"),
    ("IDLE_TIMEOUT_SECS", "soon", "seconds"),
    ("BODY_TIMEOUT_SECS", "nan", "seconds"),
    ("TLS_HANDSHAKE_TIMEOUT_SECS", "inf", "seconds"),
    ("STATIC_CACHE_TTL", "1x", "duration"),
    ("STATIC_CACHE_TTL", "d", "duration"),
    ("REQUEST_TIMEOUT", "0", "'off'"),
    ("SSE_TIMEOUT", "5q", "duration"),
    ("REQUEST_HEARTBEAT_MAX", "0", "'off'"),
    ("ACCESS_LOG", "maybe", "on/off"),
    ("COMPRESSION", "2", "on/off"),
    ("COMPRESSION_ENCODINGS", "deflate", "not one of zstd, br, gzip"),
    ("COMPRESSION_MIN_SIZE", "big", "size"),
    ("COMPRESSION_TYPES", "html", "type/subtype"),
    ("HTTP3", "sometimes", "on/off"),
    ("RATE_LIMIT", "lots", "integer"),
    ("RATE_WINDOW", "0", "positive integer"),
    ("RATE_BURST", "0", "positive integer"),
    ("RATE_BURST", "many", "positive integer"),
    ("RATE_LIMIT_MAX_CLIENTS", "0", "from 1 to 16777216"),
    ("RATE_LIMIT_MAX_CLIENTS", "99999999999", "from 1 to 16777216"),
    ("TRUSTED_PROXIES", "10.0.0.0/8, example.com", "example.com"),
    ("TLS_CERT", "/nonexistent/cert.pem", "does not exist"),
    ("HTTP1_PARSER", "llhttp", "httptools, h11"),
    ("HTTP2_IMPL", "hyper", "nghttp2, h2"),
    ("MAX_BODY_SIZE", "10T", "size"),
    ("MAX_HEADER_SIZE", "100", "at least 1024"),
    ("MAX_REQUEST_LINE", "-5", "size"),
    ("H2_MAX_CONCURRENT_STREAMS", "0", "from 1 to"),
    ("H2_MAX_HEADER_LIST_SIZE", "big", "size"),
    ("PHP_INI", "/nonexistent/php.ini", "does not exist"),
    ("PHP_INI_SET", "memory_limit", "key=value"),
    ("PHP_INI_SET", "bad key=1", "key=value"),
    ("LOG_LEVEL", "verbose", "debug, info, warning, error"),
    ("METRICS", "always", "on/off"),
    ("METRICS", "on", "needs INTERNAL_ADDR"),
    ("SERVER_TIMING", "some", "on/off"),
    ("OTEL_TRACES_EXPORTER", "jaeger", "none, otlp"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", "needs OTEL_TRACES_EXPORTER=otlp"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x/v1/traces", "http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
]


@pytest.mark.parametrize(("env", "text", "reason"), BAD)
@pytest.mark.parametrize("source", ["env", "flag"])
def test_bad_value_is_refused_naming_the_option(files: dict[str, Path], env: str, text: str,
                                                reason: str, source: str) -> None:
    flag = "--" + env.lower().replace("_", "-")
    text = _text(text, files)
    call: Callable[[], Config] = (
        (lambda: load(files, env={env: text})) if source == "env"
        else (lambda: load(files, [flag, text]))
    )
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{flag} / {env}: "), message
    assert reason in message
    assert info.value.option == env


def test_error_message_format(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load(files, env={"PHP_WORKERS": "abc"})
    assert str(info.value) == ("--php-workers / PHP_WORKERS: must be a non-negative integer, "
                               "got 'abc'")


def test_empty_service_name_flag_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="--service-name / SERVICE_NAME: must not be empty"):
        load(files, ["--service-name", ""])


@pytest.mark.parametrize(("index", "routing", "mode", "index_file"), [
    ("", "", "traditional", None), ("index.php", "", "front-controller", "index.php"),
    ("app.html", "", "spa", "app.html"), ("", "try-files", "try-files", "index.php"),
    ("", "front-controller", "front-controller", "index.php"),
    ("app.php", "try-files", "try-files", "app.php"),
])
def test_routing_mode_and_index_file(files: dict[str, Path], index: str, routing: str,
                                     mode: str, index_file: str | None) -> None:
    c = load(files, env={"INDEX_FILE": index, "ROUTING": routing})
    assert (c.routing, c.index_file) == (mode, index_file)


@pytest.mark.parametrize(("index", "routing"), [
    ("index.php", "traditional"), ("index.html", "try-files"), ("index.html", "front-controller"),
    ("", "spa"), ("index.php", "spa"),
])
def test_routing_mode_that_does_not_fit_index_file_is_refused(files: dict[str, Path], index: str,
                                                              routing: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(files, env={"INDEX_FILE": index, "ROUTING": routing})
    assert info.value.option == "INDEX_FILE" and f"ROUTING={routing}" in str(info.value)


@pytest.mark.parametrize(("script", "index", "index_file"), [
    ("worker", "", "app.php"),  # in the root: named by its own name
    ("outside", "", "index.php"),  # elsewhere: the usual entry point's name
    ("outside", "app.php", "app.php"),
])
def test_worker_script_routes_every_php_request_to_it(files: dict[str, Path], script: str,
                                                      index: str, index_file: str) -> None:
    c = load(files, env={"WORKER_SCRIPT": str(files[script]), "INDEX_FILE": index,
                         "WORKER_MAX_REQUESTS": "250"})
    assert (c.routing, c.index_file, c.worker_max_requests) == (
        "front-controller", index_file, 250)


@pytest.mark.parametrize(("env", "value", "refused"), [
    ("ROUTING", "try-files", "ROUTING"), ("ROUTING", "traditional", "ROUTING"),
    ("INDEX_FILE", "index.html", "INDEX_FILE"),
])
def test_worker_script_refuses_other_routing(files: dict[str, Path], env: str, value: str,
                                             refused: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(files, env={"WORKER_SCRIPT": str(files["worker"]), env: value})
    assert info.value.option == refused and "WORKER_SCRIPT" in str(info.value)


def test_sendfile_roots_and_accel_root(files: dict[str, Path]) -> None:
    root, errors = files["root"], files["errors"]
    c = load(files, env={"X_SENDFILE_ROOTS": f"{root}, {errors}", "X_ACCEL_ROOT": str(root)})
    assert c.x_sendfile_roots == (root, errors)
    assert (c.x_accel_root.prefix, c.x_accel_root.directory) == ("/", root)  # type: ignore
    c = load(files, ["--x-accel-root", f"/protected/={errors}"])
    assert (c.x_accel_root.prefix, c.x_accel_root.directory) == ("/protected/", errors)  # type: ignore
    assert dict(c.describe())["X_ACCEL_ROOT"] == f"/protected/={errors}"
    c = load(files)
    assert (c.x_sendfile_roots, c.x_accel_root) == ((), None)


@pytest.mark.parametrize(("given", "missing"), [("TLS_CERT", "TLS_KEY"), ("TLS_KEY", "TLS_CERT")])
def test_tls_needs_both(files: dict[str, Path], given: str, missing: str) -> None:
    path = files["cert" if given == "TLS_CERT" else "key"]
    with pytest.raises(ConfigError) as info:
        load(files, env={given: str(path)})
    assert info.value.option == missing
    assert f"required when {given} is set" in str(info.value)


@pytest.mark.parametrize("broken", ["not pem", "key of another certificate"])
def test_unusable_tls_files_are_refused_at_start_up(files: dict[str, Path], broken: str) -> None:
    key = files["other_key"]
    if broken == "not pem":
        key = files["ini"]  # "x\n"
    with pytest.raises(ConfigError) as info:
        load(files, env={"TLS_CERT": str(files["cert"]), "TLS_KEY": str(key)})
    assert info.value.option == "TLS_CERT"
    assert "not a usable PEM certificate and matching private key" in str(info.value)


def test_http3_stream_window_copy_matches_the_adapter() -> None:
    from gateway.config import _H3_STREAM_WINDOW
    from gateway.protocol.http3 import STREAM_WINDOW

    assert _H3_STREAM_WINDOW == STREAM_WINDOW  # config keeps a copy to stay free of aioquic


def test_http3_needs_header_lists_that_fit_a_stream_window(files: dict[str, Path]) -> None:
    tls = {"TLS_CERT": str(files["cert"]), "TLS_KEY": str(files["key"])}
    with pytest.raises(ConfigError) as info:
        load(files, env={**tls, "H2_MAX_HEADER_LIST_SIZE": "256K"})
    assert info.value.option == "H2_MAX_HEADER_LIST_SIZE"
    assert "below 256K while HTTP3 is on" in str(info.value)
    c = load(files, env={**tls, "H2_MAX_HEADER_LIST_SIZE": "256K", "HTTP3": "off"})
    assert c.h2_max_header_list_size == 256 * 1024


def test_rate_burst_defaults_to_rate_limit_and_needs_it(files: dict[str, Path]) -> None:
    assert load(files, env={"RATE_LIMIT": "40"}).rate_burst == 40
    assert load(files, env={"RATE_LIMIT": "40", "RATE_BURST": "5"}).rate_burst == 5
    assert load(files, ["--rate-limit", "40", "--rate-burst", "100"]).rate_burst == 100
    with pytest.raises(ConfigError) as info:
        load(files, env={"RATE_BURST": "5"})
    assert str(info.value) == ("--rate-burst / RATE_BURST: needs RATE_LIMIT > 0 "
                               "(rate limiting is off)")


def test_http3_on_without_tls_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="--http3 / HTTP3: needs TLS_CERT"):
        load(files, ["--http3"])


def test_fewer_workers_than_processes_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="--php-workers / PHP_WORKERS: must be >= PROCESSES"):
        load(files, ["--processes", "4", "--php-workers", "2"])


def test_internal_addr_must_not_share_the_listen_port(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="INTERNAL_ADDR: must not use the same port"):
        load(files, env={"LISTEN_ADDR": "0.0.0.0:8080", "INTERNAL_ADDR": "127.0.0.1:8080"})
    assert load(files, env={"LISTEN_ADDR": "127.0.0.1:0", "INTERNAL_ADDR": ":0"}).internal_addr


def test_unknown_flag_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unrecognized arguments: --php-workerz"):
        load(files, ["--php-workerz", "2"])
    with pytest.raises(ConfigError, match="expected one argument"):
        load(files, ["--php-workers"])


def test_abbreviated_flags_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError):
        load(files, ["--php-work", "2"])


def test_describe_lists_every_option(files: dict[str, Path]) -> None:
    described = dict(load(files, ["--index-file", "index.php", "--php-ini-set", "a=1"])
                     .describe())
    assert list(described) == [opt.env for opt in OPTIONS]
    assert described["INDEX_FILE"] == "index.php"
    assert described["PHP_INI_SET"] == "a=1"
    assert described["ACCESS_LOG"] == "off"
    assert described["LISTEN_ADDR"] == "0.0.0.0:8080"


def test_help_mentions_every_flag_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    text = build_parser().format_help()
    for opt in OPTIONS:
        assert opt.flag in text and opt.env in text


def test_configuration_doc_is_generated_from_the_table() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert options_markdown() in doc, "regenerate with: python -m gateway.config"


def test_metrics_follow_the_internal_server(files: dict[str, Path]) -> None:
    assert load(files).metrics is False
    assert load(files, env={"INTERNAL_ADDR": "127.0.0.1:9090"}).metrics is True
    assert load(files, ["--metrics", "off", "--internal-addr", "127.0.0.1:9090"]).metrics is False


def test_otlp_endpoints_and_service_name(files: dict[str, Path]) -> None:
    c = load(files, env={"OTEL_TRACES_EXPORTER": "otlp", "SERVICE_NAME": "shop"})
    assert (c.otel_service_name, traces_url(c)) == ("shop", "http://localhost:4318/v1/traces")
    c = load(files, env={"OTEL_TRACES_EXPORTER": "otlp",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert traces_url(c) == "http://collector:4318/v1/traces"
    assert c.otel_exporter_otlp_endpoint == "http://collector:4318/"
    c = load(files, ["--otel-exporter-otlp-traces-endpoint", "https://x.example/t"],
             {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert (traces_url(c), c.otel_exporter_otlp_traces_endpoint) == (
        "https://x.example/t", "https://x.example/t")
