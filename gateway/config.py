"""Start-up configuration: one table of options, each a CLI flag and an environment variable.

Names and meanings follow tokio_php where it has the option, so its users move over
unchanged. Precedence: flag > environment variable > default. An empty environment
variable counts as unset. A malformed or out-of-range value raises `ConfigError` naming
both the flag and the variable. docs/configuration.md is generated from `OPTIONS` by
`options_markdown()` (`python -m gateway.config`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import gateway
from gateway.cpus import available_cpus

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PHP_INI = Path(gateway.__file__).parent / "php" / "php.ini"


class ConfigError(Exception):
    """A configuration value was refused; str() names the flag and the variable."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(option, message)
        self.option = option  # environment-variable name, "" for command-line syntax errors
        self.message = message

    def __str__(self) -> str:
        if not self.option:
            return f"command line: {self.message}"
        return f"{flag_for(self.option)} / {self.option}: {self.message}"


@dataclass(frozen=True, slots=True)
class AccelRoot:
    """X_ACCEL_ROOT: X-Accel-Redirect URIs under `prefix` name files under `directory`."""

    prefix: str  # "/" (the URI is appended, like nginx `root`) or "/protected/" (`alias`)
    directory: Path

    def __str__(self) -> str:
        return str(self.directory) if self.prefix == "/" else f"{self.prefix}={self.directory}"


class HostPort(NamedTuple):
    host: str  # literal IP or host name, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def flag_for(env: str) -> str:
    return "--" + env.lower().replace("_", "-")


# ---------------------------------------------------------------- value parsers
# Each takes the stripped text and returns the value or raises ValueError(reason).


def _auto_or_integer(minimum: int) -> Callable[[str], int | None]:
    """An integer, or `auto` (None) for a value worked out once the others are known."""
    integer = _integer(minimum)

    def parse(text: str) -> int | None:
        if text.strip().lower() == "auto":
            return None
        try:
            return integer(text)
        except ValueError as exc:
            raise ValueError(f"{exc}, or auto") from None

    return parse


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(_expect_int(minimum, maximum)) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(_expect_int(minimum, maximum))
        return value

    return parse


def _expect_int(minimum: int, maximum: int | None) -> str:
    if maximum is not None:
        return f"must be an integer from {minimum} to {maximum}"
    if minimum in (0, 1):
        return "must be a positive integer" if minimum else "must be a non-negative integer"
    return f"must be an integer >= {minimum}"


def _optional_non_negative_seconds(text: str) -> float | None:
    return _non_negative_seconds(text) if text else None


def _optional_positive_integer(text: str) -> int | None:
    return _integer(1)(text) if text else None


MAX_RATE_LIMIT_CLIENTS = 16 * 1024 * 1024  # 256 MiB of rate-limit table


def _seconds(text: str) -> float:
    value = _non_negative_seconds(text)
    if value == 0:
        raise ValueError("must be a number of seconds > 0")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds >= 0")
    return value


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdwy]?)")


def _parse_duration(text: str) -> float:
    """'90', '90s', '2m', '1h30m', '1d', '1w', '1y' -> seconds (tokio_php's units)."""
    low = text.lower()
    pos, total = 0, 0.0
    while pos < len(low):
        match = _DURATION_PART.match(low, pos)
        if match is None or (not match.group(2) and match.end() != len(low)):
            raise ValueError("must be a duration like 30s, 2m, 1h, 1d, 1w, 1y or 'off'")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
        pos = match.end()
    if not low:
        raise ValueError("must be a duration like 30s, 2m, 1h, 1d, 1w, 1y or 'off'")
    return total


def _timeout_or_off(text: str) -> float | None:
    if text.lower() == "off":
        return None
    value = _parse_duration(text)
    if value <= 0:
        raise ValueError("must be a duration > 0 (use 'off' to disable)")
    return value


def _ttl_or_off(text: str) -> int | None:
    if text.lower() == "off":
        return None
    return int(_parse_duration(text))


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _size(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        match = _SIZE.fullmatch(text)
        if match is None:
            raise ValueError("must be a size in bytes with an optional K, M or G suffix")
        value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
        if value < minimum:
            raise ValueError(f"must be at least {minimum} bytes")
        return value

    return parse


_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def _boolean(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be one of 0/1, true/false, on/off, yes/no")


def _auto_boolean(text: str) -> bool | None:
    return None if text.lower() == "auto" else _boolean(text)


def _choice(
    choices: Sequence[str], aliases: Mapping[str, str] | None = None
) -> Callable[[str], str]:
    def parse(text: str) -> str:
        low = text.lower()
        low = (aliases or {}).get(low, low)
        if low not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return low

    return parse


def _address(text: str) -> HostPort:
    """host:port, [v6]:port or :port (all IPv4 interfaces)."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError("must be host:port, [ipv6]:port or :port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("must be host:port, [ipv6]:port or :port")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError("port must be an integer from 0 to 65535")
    return HostPort(host, int(port_text))


def _optional_address(text: str) -> HostPort | None:
    return _address(text) if text else None


def _directory(text: str) -> Path:
    path = Path(text).expanduser().absolute()
    if not path.exists():
        raise ValueError("directory does not exist")
    if not path.is_dir():
        raise ValueError("is not a directory")
    return path


def _optional_directory(text: str) -> Path | None:
    return _directory(text) if text else None


def _absolute_directories(text: str) -> tuple[Path, ...]:
    dirs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if not item.startswith("/"):
            raise ValueError(f"{item!r} is not an absolute path")
        try:
            dirs.append(_directory(item))
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
    return tuple(dirs)


def _accel_root(text: str) -> AccelRoot | None:
    if not text:
        return None
    prefix, sep, rest = text.partition("=")
    if sep and prefix.endswith("/"):
        if not prefix.startswith("/"):
            raise ValueError("must be a directory, or /uri-prefix/=directory")
        text = rest
    else:
        prefix = "/"
    return AccelRoot(prefix, _directory(text))


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser().absolute()
    if not path.is_file():
        raise ValueError("file does not exist or is not a regular file")
    if not os.access(path, os.R_OK):
        raise ValueError("file is not readable")
    return path


def _optional_file(text: str) -> Path | None:
    return _existing_file(text) if text else None


def _php_ini(text: str) -> Path:
    return _existing_file(text) if text else DEFAULT_PHP_INI


def _index_file(text: str) -> str | None:
    if not text:
        return None
    if "/" in text or "\\" in text or text.startswith(".") or "\0" in text:
        raise ValueError("must be a file name in DOCUMENT_ROOT such as index.php (no '/')")
    return text


def _routing(text: str) -> str | None:
    from gateway.pipeline.routing import ROUTING_MODES

    low = text.lower()
    if low == "auto":
        return None
    if low not in ROUTING_MODES:
        raise ValueError("must be one of auto, " + ", ".join(ROUTING_MODES))
    return low


def _server_name(text: str) -> str | None:
    from gateway.protocol.request_fields import valid_host

    if not text:
        return None
    if not valid_host(text.encode("utf-8", "replace"), port=False):
        raise ValueError("must be a host name or IP address (no port, no spaces)")
    return text


def _url(text: str) -> str:
    """An http(s) URL with a host (an OTLP collector), or empty."""
    from urllib.parse import urlsplit

    if not text:
        return ""
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("must be an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return text


def _nonempty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


_INI_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def _ini_pair(text: str) -> tuple[str, str]:
    """One 'key=value' (a flag's value; it may contain ';')."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _INI_KEY.fullmatch(key):
        raise ValueError(f"entry {text!r} must be key=value with a php.ini directive name")
    return key, value.strip()


def _ini_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """The variable's form: 'key=value' entries separated by newlines or ';'."""
    return tuple(_ini_pair(item.strip()) for item in re.split(r"[;\n]", text) if item.strip())


def _networks(text: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for item in re.split(r"[,\s]+", text):
        if item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(nets)


COMPRESSION_CODINGS = ("zstd", "br", "gzip")  # every content coding the gateway makes
# nginx gzip_types, widened to what browsers fetch as text (Caddy's `encode` defaults alike)
DEFAULT_COMPRESSION_TYPES = (
    "text/*", "application/json", "application/*+json", "application/x-ndjson",
    "application/javascript", "application/x-javascript", "application/ecmascript",
    "application/xml", "application/*+xml", "application/yaml", "application/x-yaml",
    "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "image/bmp",
    "application/wasm", "font/ttf", "font/otf", "font/collection", "application/x-font-ttf",
    "application/x-font-otf", "application/vnd.ms-fontobject",
)
_MEDIA_PATTERN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|\*\+[a-z0-9!#$&^_.+-]+|"
                            r"[a-z0-9][a-z0-9!#$&^_.+-]*)")


def _codings(text: str) -> tuple[str, ...]:
    names = tuple(item for item in re.split(r"[,\s]+", text.lower()) if item)
    for name in names:
        if name not in COMPRESSION_CODINGS:
            raise ValueError(f"{name!r} is not one of " + ", ".join(COMPRESSION_CODINGS))
    if not names or len(set(names)) != len(names):
        raise ValueError("must list zstd, br and/or gzip, each once (COMPRESSION=off "
                         "turns compression off)")
    return names


def _media_types(text: str) -> tuple[str, ...]:
    types = tuple(item for item in re.split(r"[,\s]+", text.lower()) if item)
    for item in types:
        if not _MEDIA_PATTERN.fullmatch(item):
            raise ValueError(f"{item!r} is not type/subtype, type/* or type/*+suffix")
    if not types:
        raise ValueError("must name at least one type (COMPRESSION=off turns compression off)")
    return types


# ---------------------------------------------------------------- the option table


@dataclass(frozen=True, slots=True)
class Option:
    env: str  # environment variable; the flag is derived from it
    field: str  # Config attribute
    default: str  # textual default, parsed like user input
    parse: Callable[[str], Any]
    help: str
    peer: str = ""  # tokio_php / nginx / php-fpm equivalent, for the docs
    kind: str = "value"  # "value", "bool" (flag without value means on) or "list" (repeatable)
    default_doc: str = ""  # shown instead of `default` when the default is computed

    @property
    def flag(self) -> str:
        return flag_for(self.env)


OPTIONS: tuple[Option, ...] = (
    Option("LISTEN_ADDR", "listen_addr", "0.0.0.0:8080", _address,
           "Address to accept HTTP on: host:port, [ipv6]:port or :port (all IPv4 interfaces). "
           "HTTPS (and HTTP/3 on the same UDP port) when TLS is configured and TLS_LISTEN_ADDR "
           "is empty.", "tokio_php LISTEN_ADDR; nginx `listen`"),
    Option("TLS_LISTEN_ADDR", "tls_listen_addr", "", _optional_address,
           "Separate HTTPS + HTTP/3 address. When set (and TLS is configured) LISTEN_ADDR stays "
           "plain HTTP and this one serves TLS, like nginx `listen 80; listen 443 ssl`.",
           "nginx `listen 443 ssl; listen 443 quic`", default_doc="empty"),
    Option("PROCESSES", "processes", "auto", _auto_or_integer(1),
           "Worker processes, each with its own event loop and PHP thread pool. They accept "
           "from one shared listening socket, each only while it holds no more connections "
           "than the least-loaded one, so keep-alive clients split evenly; a crashed one is "
           "restarted while the others keep serving. auto = the CPUs this container may use "
           "(affinity mask and cgroup CPU quota), at most PHP_WORKERS.",
           "nginx `worker_processes auto` (one shared `listen` socket)"),
    Option("PHP_WORKERS", "php_workers", "0", _integer(0),
           "PHP threads in total across all processes (split evenly); 0 = twice the CPUs "
           "this container may use (what measured best: docs/benchmarks.md). Must be >= "
           "PROCESSES.", "tokio_php PHP_WORKERS; php-fpm `pm.max_children`",
           default_doc="0 (2 x CPUs)"),
    Option("QUEUE_CAPACITY", "queue_capacity", "0", _integer(0),
           "Requests that may wait for a PHP thread, in total (split like PHP_WORKERS); when "
           "full the answer is 503 with Retry-After. 0 = PHP_WORKERS x 100.",
           "tokio_php QUEUE_CAPACITY; php-fpm `listen.backlog`",
           default_doc="0 (workers x 100)"),
    Option("DOCUMENT_ROOT", "document_root", "/var/www/html", _directory,
           "Directory served; must exist. Symlinks are resolved per request (cached ~1 s), so "
           "atomic symlink-swap deploys work.", "tokio_php DOCUMENT_ROOT; nginx `root`"),
    Option("INDEX_FILE", "index_file", "", _index_file,
           "Empty: traditional mode (/a.php runs a.php, directories run index.php). A PHP file "
           "name (index.php): single entry point, every non-static path runs it. A non-PHP "
           "name (index.html): SPA mode, unknown paths serve it. See docs/routing.md.",
           "tokio_php INDEX_FILE; nginx `try_files $uri /index.php?$query_string`",
           default_doc="empty (traditional)"),
    Option("ROUTING", "routing", "auto", _routing,
           "How paths map to files and scripts (docs/routing.md maps nginx set-ups to modes): "
           "auto = what INDEX_FILE says; traditional (INDEX_FILE empty); front-controller "
           "(INDEX_FILE a PHP file, index.php when empty: every non-static path runs it, no "
           "other PHP file runs); try-files (the same fallback, but every existing .php file "
           "runs and directories run their index.php: WordPress, Drupal, MediaWiki); spa "
           "(INDEX_FILE a non-PHP file). A mode that does not fit INDEX_FILE is refused.",
           "nginx `try_files $uri $uri/ /index.php?$args` + `location ~ \\.php$` (try-files)",
           default_doc="auto"),
    Option("SYMLINKS", "symlinks", "follow", _choice(("follow", "inside-root")),
           "follow: symlinks are followed wherever they lead, as nginx does by default "
           "(Laravel's storage:link, shared upload folders, Debian's application layouts). "
           "inside-root: a path whose symlinks resolve outside DOCUMENT_ROOT is 403. Either "
           "way a symlink never exposes a dotfile or PHP source as a static file.",
           "nginx `disable_symlinks`"),
    Option("X_SENDFILE_ROOTS", "x_sendfile_roots", "", _absolute_directories,
           "Directories (absolute, comma separated) a PHP response's `X-Sendfile: /path` may "
           "name: the file is sent instead of PHP's body, with Content-Type, ETag, "
           "Last-Modified, Range and PHP's other headers (Content-Disposition); the PHP thread "
           "is free at once. A path resolving outside them is answered 500 and logged; the "
           "header never reaches the client. Empty: every X-Sendfile is refused so.",
           "Apache mod_xsendfile `XSendFilePath`", default_doc="empty"),
    Option("X_ACCEL_ROOT", "x_accel_root", "", _accel_root,
           "Directory of the files a PHP response's `X-Accel-Redirect: /uri` names, sent as "
           "for X-Sendfile: `DIR` appends the URI to it (nginx `root`), `/prefix/=DIR` "
           "replaces the prefix (nginx `alias`). Never served to clients directly, even "
           "inside DOCUMENT_ROOT (nginx `internal`). A URI with dot segments, outside the "
           "prefix or leading out of DIR is answered 500 and logged. Empty: every "
           "X-Accel-Redirect is refused so.",
           "nginx `location /prefix/ { internal; alias DIR; }`", default_doc="empty"),
    Option("WORKER_SCRIPT", "worker_script", "", _optional_file,
           "Worker mode: each PHP thread runs this script once; it boots the application and "
           "loops on gateway_handle_request() (FrankenPHP's frankenphp_handle_request() works "
           "too), which hands it one request at a time. Every request that would run PHP goes "
           "to it (front-controller routing; INDEX_FILE, index.php by default, is the URL name "
           "of the entry point); static files are still served directly. Empty: classic mode. "
           "See docs/worker-mode.md.", "FrankenPHP `worker`", default_doc="empty (classic)"),
    Option("WORKER_MAX_REQUESTS", "worker_max_requests", "0", _integer(0),
           "Start a thread's worker script again after it served this many requests (a guard "
           "against an application that leaks); 0 = never. Needs WORKER_SCRIPT.",
           "Laravel Octane `--max-requests`; FrankenPHP's MAX_REQUESTS worker loop"),
    Option("PHP_MAX_REQUESTS", "php_max_requests", "0", _integer(0),
           "Replace a PHP thread after it served this many requests: a new thread with fresh "
           "PHP memory and persistent resources (in worker mode its script boots again on the "
           "new thread); 0 = never.", "php-fpm `pm.max_requests`; FrankenPHP `max_requests`"),
    Option("SERVER_NAME", "server_name", "", _server_name,
           "Host name PHP sees as $_SERVER['SERVER_NAME'] (a host name or IP, no port). Empty: "
           "the request's Host (:authority on HTTP/2 and HTTP/3) without its port, which is "
           "always valid there, since a Host that is not an RFC 3986 host[:port] is answered "
           "400; the listening address when the request has none.",
           "nginx `server_name` (fastcgi_param SERVER_NAME $server_name)",
           default_doc="empty (the Host)"),
    Option("INTERNAL_ADDR", "internal_addr", "", _optional_address,
           "Address of the internal server (/health, /ready, /metrics, /config); empty = off.",
           "tokio_php INTERNAL_ADDR; php-fpm `pm.status_path`", default_doc="empty (off)"),
    Option("ERROR_PAGES_DIR", "error_pages_dir", "", _optional_directory,
           "Directory of {status}.html pages (read at start-up, re-read within 2 s of a "
           "change). A 4xx/5xx answer without a body of its own (the server's short "
           "plain-text answers, an empty PHP one such as the 500 after a fatal error) is "
           "sent as the page when the request's Accept lists text/html: status and other "
           "headers kept, Content-Type text/html; charset=utf-8. A status without a file, or "
           "every status when empty, gets a small built-in page. Other clients, HEAD requests "
           "and answers with a body of their own are left as they are.",
           "tokio_php ERROR_PAGES_DIR; nginx `error_page`",
           default_doc="empty (built-in pages; the image: the shipped ones)"),
    Option("DRAIN_TIMEOUT_SECS", "drain_timeout_secs", "", _optional_non_negative_seconds,
           "On SIGTERM, how long in-flight requests may take to finish before connections are "
           "closed; 0 closes at once. Empty = REQUEST_TIMEOUT (30 when that is off), so a "
           "request within its time limit is never cut by a stop; give the container "
           "engine a stop timeout 10 s longer (docs/operations.md).",
           "tokio_php DRAIN_TIMEOUT_SECS; nginx `worker_shutdown_timeout`",
           default_doc="empty (REQUEST_TIMEOUT: 120)"),
    Option("STATIC_CACHE_TTL", "static_cache_ttl", "1d", _ttl_or_off,
           "Cache-Control max-age for static files: seconds or s/m/h/d/w/y units; 'off' sends "
           "no Cache-Control.", "tokio_php STATIC_CACHE_TTL; nginx `expires`"),
    Option("REQUEST_TIMEOUT", "request_timeout", "2m", _timeout_or_off,
           "Longest a PHP request may run before the client gets 504 and the PHP thread is "
           "interrupted; 'off' disables.",
           "tokio_php REQUEST_TIMEOUT; nginx `fastcgi_read_timeout`, php-fpm "
           "`request_terminate_timeout`"),
    Option("REQUEST_HEARTBEAT_MAX", "request_heartbeat_max", "10m", _timeout_or_off,
           "Longest a request may run, from when PHP started it, by calling "
           "gateway_request_heartbeat(int $seconds = 0) (or tokio_request_heartbeat()): each "
           "call moves the request's deadline to $seconds from now (0: REQUEST_TIMEOUT) and "
           "returns true, or returns false and changes nothing past this bound, with "
           "REQUEST_TIMEOUT off or a negative $seconds. 'off' refuses every heartbeat. PHP's "
           "max_execution_time still applies (set_time_limit()).",
           "tokio_php `tokio_request_heartbeat()`"),
    Option("SSE_TIMEOUT", "sse_timeout", "30m", _timeout_or_off,
           "Request timeout for text/event-stream responses (replaces REQUEST_TIMEOUT once the "
           "response is SSE); 'off' disables.", "tokio_php SSE_TIMEOUT"),
    Option("HEADER_TIMEOUT_SECS", "header_timeout_secs", "5", _seconds,
           "Time allowed to receive a request's headers (slowloris protection).",
           "tokio_php HEADER_TIMEOUT_SECS; nginx `client_header_timeout`"),
    Option("BODY_TIMEOUT_SECS", "body_timeout_secs", "60", _seconds,
           "Longest gap between two reads of a request body.", "nginx `client_body_timeout`"),
    Option("SEND_TIMEOUT_SECS", "send_timeout_secs", "60", _seconds,
           "Longest a response may wait on a client that takes none of it; then the stream is "
           "reset (HTTP/2, HTTP/3) or the connection closed (HTTP/1), with a warning logged.",
           "nginx `send_timeout`"),
    Option("REQUEST_BUFFERING", "request_buffering", "on", _boolean,
           "Receive the whole request body before PHP is given the request (in memory within "
           "BUFFER_MEMORY, else in a temp file removed afterwards), so a slow upload costs a "
           "connection, not a PHP thread. off: PHP reads the body as it arrives "
           "(BODY_TIMEOUT_SECS then bounds each read).",
           "nginx `fastcgi_request_buffering`", kind="bool"),
    Option("RESPONSE_BUFFERING", "response_buffering", "on", _boolean,
           "Take PHP's output as fast as PHP writes it and hold what the client has not yet "
           "taken (in memory within BUFFER_MEMORY, else in a temp file, at most 1 GiB a "
           "response), so a slow reader does not hold a PHP thread. flush() and Server-Sent "
           "Events still reach a client that keeps up at once. off: PHP waits for the client.",
           "nginx `fastcgi_buffering`, `fastcgi_max_temp_file_size 1024m`", kind="bool"),
    Option("BUFFER_MEMORY", "buffer_memory", "64M", _size(0),
           "Request and response bytes one worker process holds in memory for buffering "
           "(1 MiB at most per request); beyond it they go to temp files in TMPDIR, unlinked "
           "at once.",
           "nginx `client_body_buffer_size`, `fastcgi_buffers`"),
    Option("IDLE_TIMEOUT_SECS", "idle_timeout_secs", "60", _seconds,
           "Keep-alive connections with no request in flight are closed after this.",
           "tokio_php IDLE_TIMEOUT_SECS; nginx `keepalive_timeout`"),
    Option("TLS_HANDSHAKE_TIMEOUT_SECS", "tls_handshake_timeout_secs", "10", _seconds,
           "Time allowed for the TLS handshake.", "nginx `ssl_handshake_timeout`"),
    Option("ACCESS_LOG", "access_log", "0", _boolean,
           "Write one JSON access-log line per request to stdout.",
           "tokio_php ACCESS_LOG; nginx `access_log`", kind="bool"),
    Option("METRICS", "metrics", "auto", _auto_boolean,
           "Count requests, latencies, bytes, connections and PHP thread use for /metrics on "
           "INTERNAL_ADDR (Prometheus), summed over all PROCESSES. auto = on when "
           "INTERNAL_ADDR is set; on without INTERNAL_ADDR is refused. See "
           "docs/observability.md.", "nginx `stub_status`; php-fpm `pm.status_path`",
           kind="bool", default_doc="auto (on with INTERNAL_ADDR)"),
    Option("SERVER_TIMING", "server_timing", "off", _boolean,
           "Add a Server-Timing header to every answer: `queue` (wait for a PHP thread), "
           "`php` (PHP's run) and `total`, in milliseconds, as they stand when the head "
           "leaves. It tells any client how long PHP took: keep it off on public servers.",
           "FrankenPHP / Caddy `Server-Timing`", kind="bool"),
    Option("RATE_LIMIT", "rate_limit", "0", _integer(0),
           "Requests per RATE_WINDOW a client address may make, enforced smoothly (GCRA, "
           "nginx's limit_req with nodelay): its allowance refills by one request every "
           "RATE_WINDOW/RATE_LIMIT seconds and holds at most RATE_BURST. Beyond it the answer "
           "is 429 with Retry-After (seconds until a request passes), and every answer carries "
           "RateLimit-Policy, RateLimit and X-RateLimit-Limit/-Remaining/-Reset (Reset: "
           "seconds until the allowance is full again). One limit across all PROCESSES "
           "(shared memory). The address is REMOTE_ADDR after TRUSTED_PROXIES, IPv6 by its "
           "/64. A 429 runs no PHP and reads no file; the internal server (INTERNAL_ADDR) is "
           "never limited. 0 = off.", "tokio_php RATE_LIMIT; nginx `limit_req`"),
    Option("RATE_WINDOW", "rate_window", "60", _integer(1),
           "Seconds in which RATE_LIMIT requests are allowed.",
           "tokio_php RATE_WINDOW; nginx `limit_req_zone ... rate=`"),
    Option("RATE_BURST", "rate_burst", "", _optional_positive_integer,
           "Requests a client may make at once, with a full allowance, before the refill "
           "rate applies; empty = RATE_LIMIT. Needs RATE_LIMIT.",
           "nginx `limit_req ... burst= nodelay`", default_doc="empty (RATE_LIMIT)"),
    Option("RATE_LIMIT_MAX_CLIENTS", "rate_limit_max_clients", "100000",
           _integer(1, MAX_RATE_LIMIT_CLIENTS),
           "Client addresses the rate limiter tracks, in a table of 16 bytes each made at "
           "start-up (100000: 1.6 MB); it never grows. A new client takes the place of one "
           "whose allowance is full again; if none is, of the one nearest to full, which "
           "starts over with a full allowance: a flood of new addresses never gets a tracked "
           "client refused.", "nginx `limit_req_zone ... zone=name:size`"),
    Option("TRUSTED_PROXIES", "trusted_proxies", "", _networks,
           "IPs/CIDRs (comma or space separated) of proxies whose forwarding headers are "
           "believed, only on connections from them: RFC 7239 Forwarded when present, else "
           "X-Forwarded-For and X-Forwarded-Proto. The client is the rightmost address that "
           "is not a trusted proxy (nginx `real_ip_recursive on`); the proto comes with it "
           "(X-Forwarded-Proto: its one value, or the one at the same position). They set "
           "REMOTE_ADDR (REMOTE_PORT: the header's port, else empty), HTTPS and "
           "REQUEST_SCHEME, the rate-limit address and the access log's client. A malformed "
           "address makes the header ignored. PHP sees the headers as HTTP_* either way; "
           "empty = trust none.", "nginx `set_real_ip_from` + `real_ip_header`",
           default_doc="empty"),
    Option("TLS_CERT", "tls_cert", "", _optional_file,
           "PEM certificate chain; set together with TLS_KEY to enable HTTPS, HTTP/2 and "
           "HTTP/3. The pair is loaded at start-up: an unusable one stops it. The client's "
           "cipher order wins (nginx's default).", "tokio_php TLS_CERT; nginx "
           "`ssl_certificate`", default_doc="empty"),
    Option("TLS_KEY", "tls_key", "", _optional_file,
           "PEM private key for TLS_CERT.", "tokio_php TLS_KEY; nginx `ssl_certificate_key`",
           default_doc="empty"),
    Option("HTTP3", "http3", "auto", _auto_boolean,
           "HTTP/3 over QUIC on the TLS port (UDP), advertised with Alt-Svc. auto = on when "
           "TLS is configured; on without TLS is refused.", "nginx `listen ... quic`",
           kind="bool", default_doc="auto (on with TLS)"),
    Option("COMPRESSION", "compression", "on", _boolean,
           "Compress responses for clients that accept it (Accept-Encoding, q-values and * "
           "as RFC 9110 says): the best of COMPRESSION_ENCODINGS, for COMPRESSION_TYPES "
           "bodies of at least COMPRESSION_MIN_SIZE; never HEAD, 1xx/204/205/206/304, Range "
           "answers, a response that already has a Content-Encoding (PHP's ob_gzhandler) or "
           "Cache-Control: no-transform. Such responses get Vary: Accept-Encoding, and a "
           "compressed one a weak ETag and no Accept-Ranges. PHP output is compressed as it "
           "streams, each flush() and SSE event sent on at once. Static files: a "
           "precompressed sibling (app.css.zst, .br, .gz) not older than the file is sent as "
           "it is, else the best-quality form is made once in the background and kept in a "
           "32 MiB cache per process. See docs/compression.md.",
           "nginx `gzip` + `gzip_static` / `brotli`; Caddy `encode`; tokio_php always-on "
           "brotli", kind="bool"),
    Option("COMPRESSION_ENCODINGS", "compression_encodings", "zstd,br,gzip", _codings,
           "Content codings offered, the preferred first: a comma list of zstd, br, gzip. The "
           "client's q-values decide; this order breaks ties.", "Caddy `encode zstd br gzip`"),
    Option("COMPRESSION_MIN_SIZE", "compression_min_size", "256", _size(0),
           "Smallest body, by its Content-Length, that is compressed (K/M suffixes). Streamed "
           "output has none and is compressed whatever its size.",
           "nginx `gzip_min_length`; Caddy `minimum_length`"),
    Option("COMPRESSION_TYPES", "compression_types", ",".join(DEFAULT_COMPRESSION_TYPES),
           _media_types,
           "Content-Types compressed, comma or space separated: `type/subtype`, `type/*` or "
           "`type/*+suffix` (parameters such as charset are ignored).", "nginx `gzip_types`",
           default_doc="`text/*`, JSON, JavaScript, XML, SVG, wasm, fonts, icons (the "
           "list: docs/compression.md)"),
    Option("HTTP1_PARSER", "http1_parser", "httptools", _choice(("httptools", "h11")),
           "HTTP/1.1 parser: httptools (fast, C) or h11 (pure Python).", "uvicorn `--http`"),
    Option("HTTP2_IMPL", "http2_impl", "nghttp2", _choice(("nghttp2", "h2")),
           "HTTP/2 implementation: nghttp2 (libnghttp2 through cffi, fast) or h2 (pure "
           "Python). Both apply the same limits and flood guards.",
           "Hypercorn / Uvicorn use h2; curl, Apache mod_http2 and nghttpx use nghttp2"),
    Option("MAX_CONNECTIONS", "max_connections", "4096", _integer(1),
           "Open connections one worker process accepts, over all its listeners (QUIC "
           "included); beyond it a new connection is closed at once, counted and logged (a "
           "warning every 10 s at most).", "nginx `worker_connections`"),
    Option("MAX_BODY_SIZE", "max_body_size", "64M", _size(0),
           "Largest request body (K/M/G suffixes, 1024-based); larger gets 413. 0 = no limit.",
           "nginx `client_max_body_size`; PHP post_max_size still applies"),
    Option("MAX_HEADER_SIZE", "max_header_size", "16K", _size(1024),
           "Largest request header section (HTTP/1); larger gets 431.",
           "nginx `large_client_header_buffers`"),
    Option("MAX_REQUEST_LINE", "max_request_line", "8K", _size(64),
           "Longest HTTP/1 request line; longer gets 414.",
           "nginx `large_client_header_buffers`"),
    Option("H2_MAX_CONCURRENT_STREAMS", "h2_max_concurrent_streams", "100", _integer(1, 2**31 - 1),
           "SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 (and the HTTP/3 stream limit).",
           "nginx `http2_max_concurrent_streams`"),
    Option("H2_MAX_HEADER_LIST_SIZE", "h2_max_header_list_size", "64K", _size(1024),
           "SETTINGS_MAX_HEADER_LIST_SIZE for HTTP/2 and HTTP/3.",
           "nginx `large_client_header_buffers`"),
    Option("PHP_INI", "php_ini", "", _php_ini,
           "php.ini file to load; must exist when set.", "php-fpm `-c`; PHPRC",
           default_doc="gateway/php/php.ini (shipped)"),
    Option("PHP_INI_SET", "php_ini_set", "", _ini_pairs,
           "php.ini overrides as key=value. The flag repeats (--php-ini-set a=1 "
           "--php-ini-set b=2) and its value may contain ';'; the variable holds several "
           "separated by newlines or ';'. "
           "A key set by a flag overrides the same key from the variable.",
           "php-fpm `php_admin_value`; `php -d`", kind="list", default_doc="empty"),
    Option("OTEL_TRACES_EXPORTER", "otel_traces_exporter", "none", _choice(("none", "otlp")),
           "otlp: export a span per request (and a child span per PHP script) over OTLP/HTTP "
           "through the OpenTelemetry SDK, which the `otel` extra installs (the Docker image "
           "has it); start-up is refused without it. none: no spans, ids only (the default, "
           "unlike the SDK's own). The SDK's other OTEL_* variables (headers, timeout, "
           "sampler, batch sizes, resource attributes) apply as the SDK documents them.",
           "OpenTelemetry SDK environment variables"),
    Option("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint", "", _url,
           "Base URL of the OTLP/HTTP collector; spans go to its /v1/traces. Needs "
           "OTEL_TRACES_EXPORTER=otlp.", "OpenTelemetry SDK",
           default_doc="empty (http://localhost:4318)"),
    Option("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_exporter_otlp_traces_endpoint", "", _url,
           "Full URL spans are posted to, instead of OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces. "
           "Needs OTEL_TRACES_EXPORTER=otlp.", "OpenTelemetry SDK", default_doc="empty"),
    Option("OTEL_EXPORTER_OTLP_PROTOCOL", "otel_exporter_otlp_protocol", "http/protobuf",
           _choice(("http/protobuf",)),
           "OTLP transport; only http/protobuf (gRPC is refused rather than sent to the "
           "wrong port).", "OpenTelemetry SDK"),
    Option("OTEL_SERVICE_NAME", "otel_service_name", "", str,
           "service.name of the exported spans; empty = SERVICE_NAME.", "OpenTelemetry SDK",
           default_doc="empty (SERVICE_NAME)"),
    Option("LOG_LEVEL", "log_level", "info",
           _choice(("debug", "info", "warning", "error"), {"warn": "warning", "trace": "debug"}),
           "debug, info, warning or error (warn and trace accepted as aliases).",
           "tokio_php LOG_LEVEL; nginx `error_log ... level`"),
    Option("SERVICE_NAME", "service_name", "php-gateway", _nonempty,
           "Name in logs, traces and metrics labels.", "tokio_php SERVICE_NAME"),
)

_BY_ENV = {opt.env: opt for opt in OPTIONS}


@dataclass(frozen=True, slots=True)
class Config:
    listen_addr: HostPort
    tls_listen_addr: HostPort | None
    processes: int
    php_workers: int  # resolved: total across processes, never 0
    queue_capacity: int  # resolved: total across processes, never 0
    document_root: Path  # absolute, not symlink-resolved (routing resolves it per request)
    index_file: str | None  # None = traditional mode
    routing: str  # resolved: traditional | front-controller | try-files | spa
    symlinks: str  # "follow" | "inside-root"
    x_sendfile_roots: tuple[Path, ...]
    x_accel_root: AccelRoot | None
    worker_script: Path | None  # None = classic mode
    worker_max_requests: int  # 0 = never
    php_max_requests: int  # 0 = never
    server_name: str | None  # None: the request's Host
    internal_addr: HostPort | None
    error_pages_dir: Path | None
    drain_timeout_secs: float
    static_cache_ttl: int | None  # seconds; None = no Cache-Control
    request_timeout: float | None  # seconds; None = off
    request_heartbeat_max: float | None  # seconds; None = heartbeats refused
    sse_timeout: float | None
    header_timeout_secs: float
    body_timeout_secs: float
    send_timeout_secs: float
    request_buffering: bool
    response_buffering: bool
    buffer_memory: int  # bytes per worker process
    idle_timeout_secs: float
    tls_handshake_timeout_secs: float
    access_log: bool
    metrics: bool  # resolved from auto
    server_timing: bool
    rate_limit: int  # 0 = off
    rate_window: int
    rate_burst: int  # resolved: RATE_LIMIT when unset (0 while rate limiting is off)
    rate_limit_max_clients: int
    trusted_proxies: tuple[IPNetwork, ...]
    tls_cert: Path | None
    tls_key: Path | None
    http3: bool  # resolved from auto
    compression: bool
    compression_encodings: tuple[str, ...]  # preference order
    compression_min_size: int  # bytes
    compression_types: tuple[str, ...]  # lower-case media-type patterns
    http1_parser: str  # "httptools" | "h11"
    http2_impl: str  # "nghttp2" | "h2"
    max_connections: int  # per worker process
    max_body_size: int  # bytes; 0 = unlimited
    max_header_size: int
    max_request_line: int
    h2_max_concurrent_streams: int
    h2_max_header_list_size: int
    php_ini: Path
    php_ini_set: tuple[tuple[str, str], ...]
    otel_traces_exporter: str  # "none" | "otlp"
    otel_exporter_otlp_endpoint: str
    otel_exporter_otlp_traces_endpoint: str
    otel_exporter_otlp_protocol: str
    otel_service_name: str  # resolved: SERVICE_NAME when empty
    log_level: str  # "debug" | "info" | "warning" | "error"
    service_name: str

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def single_entry_point(self) -> bool:
        return self.index_file is not None

    def php_workers_for(self, process_index: int) -> int:
        """PHP threads of one worker process; the total is split as evenly as possible."""
        return _share(self.php_workers, self.processes, process_index)

    def queue_capacity_for(self, process_index: int) -> int:
        return max(1, _share(self.queue_capacity, self.processes, process_index))

    def describe(self) -> list[tuple[str, str]]:
        """(ENV_NAME, effective value) for every option: the /config endpoint and start-up log."""
        return [(opt.env, _format(getattr(self, opt.field))) for opt in OPTIONS]


def _share(total: int, parts: int, index: int) -> int:
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple) and not isinstance(value, HostPort):
        return ", ".join(f"{v[0]}={v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


# ---------------------------------------------------------------- loading


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError("", message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="php-gateway",
        description="Serve PHP applications over HTTP/1.1, HTTP/2 and HTTP/3. Every option "
        "can also be set through the environment variable shown; the flag wins.",
        allow_abbrev=False,
    )
    for opt in OPTIONS:
        default = opt.default_doc or opt.default or "empty"
        help_text = f"{opt.help} [env {opt.env}; default {default}]".replace("%", "%%")
        if opt.kind == "bool":
            parser.add_argument(opt.flag, dest=opt.field, nargs="?", const="on",
                                metavar="on|off", help=help_text)
        elif opt.kind == "list":
            parser.add_argument(opt.flag, dest=opt.field, action="append", metavar="KEY=VALUE",
                                help=help_text)
        else:
            parser.add_argument(opt.flag, dest=opt.field, metavar=opt.env, help=help_text)
    return parser


def _parse(opt: Option, text: str) -> Any:
    try:
        return opt.parse(text.strip())
    except ValueError as exc:
        raise ConfigError(opt.env, f"{exc}, got {text!r}") from None


def load_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Build the Config from flags (argv without the program name; None = sys.argv[1:])."""
    args = vars(build_parser().parse_args(sys.argv[1:] if argv is None else list(argv)))
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        flag_value = args.get(opt.field)
        env_value = environ.get(opt.env, "")
        if opt.kind == "list":
            merged = dict(_parse(opt, env_value)) if env_value.strip() else {}
            for item in flag_value or ():
                try:
                    key, value = _ini_pair(item.strip())
                except ValueError as exc:
                    raise ConfigError(opt.env, str(exc)) from None
                merged[key] = value
            values[opt.field] = tuple(merged.items())
        elif flag_value is not None:
            values[opt.field] = _parse(opt, flag_value)
        elif env_value.strip():
            values[opt.field] = _parse(opt, env_value)
        else:
            values[opt.field] = _parse(opt, opt.default)
    _resolve_dependent(values)
    return Config(**values)


def _resolve_dependent(values: dict[str, Any]) -> None:
    """Cross-option rules and computed defaults."""
    if (values["tls_cert"] is None) != (values["tls_key"] is None):
        missing = "TLS_KEY" if values["tls_key"] is None else "TLS_CERT"
        other = "TLS_CERT" if missing == "TLS_KEY" else "TLS_KEY"
        raise ConfigError(missing, f"required when {other} is set (TLS needs both)")
    tls = values["tls_cert"] is not None
    if tls:
        _check_tls_files(values["tls_cert"], values["tls_key"])
    if values["http3"] is None:
        values["http3"] = tls
    elif values["http3"] and not tls:
        raise ConfigError("HTTP3", "needs TLS_CERT and TLS_KEY (QUIC is always encrypted)")
    if values["http3"] and values["h2_max_header_list_size"] >= _H3_STREAM_WINDOW:
        # an HTTP/3 header block is credited only once parsed: it must fit one stream window
        raise ConfigError("H2_MAX_HEADER_LIST_SIZE",
                          f"must be below {_H3_STREAM_WINDOW // 1024}K while HTTP3 is on")
    if values["rate_burst"] is None:
        values["rate_burst"] = values["rate_limit"]
    elif values["rate_limit"] == 0:
        raise ConfigError("RATE_BURST", "needs RATE_LIMIT > 0 (rate limiting is off)")
    _resolve_worker(values)
    _resolve_routing(values)
    if values["metrics"] is None:
        values["metrics"] = values["internal_addr"] is not None
    elif values["metrics"] and values["internal_addr"] is None:
        raise ConfigError("METRICS", "needs INTERNAL_ADDR (where /metrics is served)")
    _resolve_otel(values)
    if values["drain_timeout_secs"] is None:
        values["drain_timeout_secs"] = values["request_timeout"] or DEFAULT_DRAIN_TIMEOUT_SECS
    cpus = available_cpus()
    if values["processes"] is None:  # auto: a process per CPU, none without a PHP thread
        values["processes"] = min(cpus, values["php_workers"] or cpus)
    processes = values["processes"]
    if values["php_workers"] == 0:
        values["php_workers"] = max(PHP_WORKERS_PER_CPU * cpus, processes)
    elif values["php_workers"] < processes:
        raise ConfigError("PHP_WORKERS", f"must be >= PROCESSES ({processes}): each process "
                                         "needs at least one PHP thread")
    if values["queue_capacity"] == 0:
        values["queue_capacity"] = values["php_workers"] * 100
    listeners = [("LISTEN_ADDR", values["listen_addr"])]
    if values["tls_listen_addr"] is not None:
        listeners.append(("TLS_LISTEN_ADDR", values["tls_listen_addr"]))
    internal = values["internal_addr"]
    for name, addr in listeners:
        if internal is not None and _clash(internal, addr):
            raise ConfigError("INTERNAL_ADDR", f"must not use the same port as {name} ({addr})")
    if len(listeners) == 2 and _clash(listeners[0][1], listeners[1][1]):
        raise ConfigError("TLS_LISTEN_ADDR", "must not use the same port as LISTEN_ADDR")


def _resolve_worker(values: dict[str, Any]) -> None:
    """The worker script answers every request that would run PHP: front-controller routing,
    its entry point named by INDEX_FILE, else by its own name when it sits in DOCUMENT_ROOT."""
    script = values["worker_script"]
    if script is None:
        if values["worker_max_requests"]:
            raise ConfigError("WORKER_MAX_REQUESTS", "needs WORKER_SCRIPT (no worker to restart)")
        return
    if values["routing"] not in (None, "front-controller"):
        raise ConfigError("ROUTING", "must be auto or front-controller with WORKER_SCRIPT (the "
                                     "worker answers every request that runs PHP)")
    index = values["index_file"]
    if index is not None and not index.endswith(".php"):
        raise ConfigError("INDEX_FILE", "must be a PHP file name with WORKER_SCRIPT (the URL "
                                        "name of the worker's entry point)")
    if index is None:
        in_root = script.resolve().parent == values["document_root"].resolve()
        index = script.name if in_root and script.suffix == ".php" else "index.php"
    values["index_file"] = index
    values["routing"] = "front-controller"


def _resolve_routing(values: dict[str, Any]) -> None:
    """ROUTING=auto follows INDEX_FILE; an explicit mode must fit it (none is ignored)."""
    index, mode = values["index_file"], values["routing"]
    is_php = index is not None and index.endswith(".php")
    if mode is None:
        mode = "traditional" if index is None else "front-controller" if is_php else "spa"
    elif mode == "traditional" and index is not None:
        raise ConfigError("INDEX_FILE", "must be empty with ROUTING=traditional")
    elif mode in ("front-controller", "try-files"):
        if index is None:
            values["index_file"] = "index.php"
        elif not is_php:
            raise ConfigError("INDEX_FILE", f"must be a PHP file with ROUTING={mode}")
    elif mode == "spa" and (index is None or is_php):
        raise ConfigError("INDEX_FILE", "must name a non-PHP file (index.html) with ROUTING=spa")
    values["routing"] = mode


def _resolve_otel(values: dict[str, Any]) -> None:
    import importlib.util

    values["otel_service_name"] = values["otel_service_name"] or values["service_name"]
    if values["otel_traces_exporter"] == "none":
        for env in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            if values[env.lower()]:
                raise ConfigError(env, "needs OTEL_TRACES_EXPORTER=otlp (spans are not "
                                       "exported without it)")
        return
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ConfigError("OTEL_TRACES_EXPORTER", "otlp needs the OpenTelemetry SDK and "
                                                      "OTLP/HTTP exporter: pip install "
                                                      "'php-gateway[otel]'")


# PHP_WORKERS' default per CPU: threads beyond the cores keep them busy while a script waits
# on a database or an API (FrankenPHP's num_threads default is the same)
PHP_WORKERS_PER_CPU = 2
DEFAULT_DRAIN_TIMEOUT_SECS = 30.0  # when REQUEST_TIMEOUT is off (tokio_php's default)
_H3_STREAM_WINDOW = 256 * 1024  # gateway.protocol.http3.STREAM_WINDOW (kept import-free)


def _check_tls_files(cert: Path, key: Path) -> None:
    """Build the workers' TLS context once here, so a bad file stops start-up instead of
    every worker."""
    import ssl

    from gateway.server.tls import create_ssl_context

    try:
        create_ssl_context(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError("TLS_CERT", f"{cert} and TLS_KEY {key} are not a usable PEM "
                                      f"certificate and matching private key ({exc.reason or exc})"
                          ) from None


_WILDCARDS = {"0.0.0.0", "::", ""}


def _clash(a: HostPort, b: HostPort) -> bool:
    if a.port == 0 or a.port != b.port:
        return False
    return a.host == b.host or a.host in _WILDCARDS or b.host in _WILDCARDS


# ---------------------------------------------------------------- documentation


def options_markdown() -> str:
    """The option table of docs/configuration.md."""
    lines = [
        "| Environment variable | Flag | Default | Meaning | tokio_php / nginx equivalent |",
        "|---|---|---|---|---|",
    ]
    for opt in OPTIONS:
        default = opt.default_doc or (f"`{opt.default}`" if opt.default else "empty")
        cells = [f"`{opt.env}`", f"`{opt.flag}`", default, opt.help, opt.peer or "-"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(options_markdown())
