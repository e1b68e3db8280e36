"""Builds the request PHP sees: the CGI variables nginx's fastcgi_params (plus
fastcgi.conf's SCRIPT_FILENAME and snippets/fastcgi-php.conf's PATH_INFO) would pass to
php-fpm, in the same order. Request headers travel separately; the bridge turns them into
HTTP_* variables."""

from __future__ import annotations

import functools
from typing import NamedTuple

from gateway.php.pool import PhpRequest
from gateway.protocol.events import Headers
from gateway.protocol.request_fields import valid_host

SERVER_SOFTWARE = b"php-gateway"
_PROTOCOLS = {
    "1.0": (b"HTTP/1.0", 1000),
    "1.1": (b"HTTP/1.1", 1001),
    "2": (b"HTTP/2.0", 2000),
    "3": (b"HTTP/3.0", 3000),
}


class Script(NamedTuple):
    """Which script runs and how the URL maps onto it (the router's decision); a tuple,
    made for every PHP request."""

    filename: str  # absolute path: SCRIPT_FILENAME
    name: str  # URL path of the script: SCRIPT_NAME
    path_info: str = ""  # URL path after the script name: PATH_INFO
    worker: bool = False  # answered by the worker script (WORKER_SCRIPT), already running


# FrankenPHP's marker: Symfony Runtime and Laravel Octane look for it to pick their worker loop
WORKER_MARKER = (b"FRANKENPHP_WORKER", b"1")


def worker_script_vars(script: Script, document_root: str) -> bytes:
    """$_SERVER of a worker script while it boots (and between requests): where it is, as a
    request to it would say, so `require $_SERVER['SCRIPT_FILENAME']` (Symfony Runtime's
    autoload_runtime.php) finds the application; the environment comes first, as always."""
    fields = [b"SCRIPT_FILENAME", script.filename.encode(), b"SCRIPT_NAME", script.name.encode(),
              b"PHP_SELF", script.name.encode(), b"DOCUMENT_ROOT", document_root.encode(),
              b"GATEWAY_INTERFACE", b"CGI/1.1", b"SERVER_SOFTWARE", SERVER_SOFTWARE,
              *WORKER_MARKER]
    return b"\0".join(fields) + b"\0"


def host_and_port(host: bytes, default_port: int) -> tuple[bytes, bytes]:
    """Splits a Host header into SERVER_NAME and port ("[::1]:8443" included)."""
    if host.startswith(b"["):
        end = host.find(b"]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(b":") else b""
    else:
        name, _, port = host.partition(b":")
    return name, port or str(default_port).encode()


@functools.lru_cache(maxsize=256)
def _constant_vars(document_root: str, server: tuple[str, int], tls: bool) -> tuple[bytes, bytes]:
    """The variables that are the same for every request on one listener, pre-joined."""
    root = document_root.encode()
    fields = [b"DOCUMENT_ROOT", root, b"REQUEST_SCHEME", b"https" if tls else b"http"]
    if tls:
        fields += [b"HTTPS", b"on"]
    fields += [b"GATEWAY_INTERFACE", b"CGI/1.1", b"SERVER_SOFTWARE", SERVER_SOFTWARE,
               b"SERVER_ADDR", server[0].encode(), b"SERVER_PORT", str(server[1]).encode(),
               b"REDIRECT_STATUS", b"200"]
    return root, b"\0".join(fields)


class _ScriptVars(NamedTuple):
    script_name: bytes
    document_uri: bytes  # SCRIPT_NAME + PATH_INFO
    filename: bytes
    tail: bytes  # SCRIPT_FILENAME .. PHP_SELF (and the worker marker), joined, \0-ended


@functools.lru_cache(maxsize=1024)
def _script_vars(script: Script, root: bytes) -> _ScriptVars:
    """The variables that are the same for every request to one script: the router caches
    its answer, so a busy site asks for the same few over and over."""
    script_name = script.name.encode()
    path_info = script.path_info.encode()
    filename = script.filename.encode()
    document_uri = script_name + path_info
    tail = [b"SCRIPT_FILENAME", filename, b"PATH_INFO", path_info]
    if path_info:
        tail += (b"PATH_TRANSLATED", root + path_info)
    tail += (b"PHP_SELF", document_uri)
    if script.worker:
        tail += WORKER_MARKER
    tail.append(b"")
    return _ScriptVars(script_name, document_uri, filename, b"\0".join(tail))


_server_names: dict[bytes, bytes | None] = {}
_MEMO_LIMIT = 512  # distinct Host values remembered per worker


def _server_name(host: bytes) -> bytes | None:
    """SERVER_NAME for a Host field; None for one that is not host[:port], which must not
    reach PHP as SERVER_NAME (apps trust it). Remembered: every request asks."""
    name = _server_names.get(host, b"")  # b"": not asked yet (a valid host names something)
    if name == b"":
        name = host_and_port(host, 0)[0] if host and valid_host(host) else None
        if len(_server_names) >= _MEMO_LIMIT:
            _server_names.clear()  # endless distinct Hosts get no cache, not a leak
        _server_names[host] = name
    return name


# name \0 value \0 pairs, in the order of nginx's fastcgi_params, made in one formatting
_VARS = (b"QUERY_STRING\0%s\0REQUEST_METHOD\0%s\0CONTENT_TYPE\0%s\0CONTENT_LENGTH\0%s\0"
         b"SCRIPT_NAME\0%s\0REQUEST_URI\0%s\0DOCUMENT_URI\0%s\0%s\0REMOTE_ADDR\0%s\0"
         b"REMOTE_PORT\0%s\0SERVER_NAME\0%s\0SERVER_PROTOCOL\0%s\0%s%s")


def build_request(
    *,
    method: bytes,
    target: bytes,
    http_version: str,
    headers: Headers,
    script: Script,
    document_root: str,
    client: tuple[str, int],
    server: tuple[str, int],
    tls: bool,
    content_length: int | None,
    request_time: float,
    authority: bytes = b"",
    has_body: bool = True,
    extra_vars: bytes = b"",
    server_name: bytes | None = None,
) -> PhpRequest:
    """`extra_vars`: more name \0 value \0 pairs, appended (the request's ids)."""
    query = target.partition(b"?")[2]
    protocol, proto_num = _PROTOCOLS.get(http_version, (b"HTTP/1.1", 1001))
    content_type = b""
    host = b""
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"host":
            host = value
    if not host and authority:
        # HTTP/2 and HTTP/3 carry the host as :authority; PHP apps read HTTP_HOST.
        host = authority
        headers = [(b"host", authority), *headers]
    if server_name is None:  # no SERVER_NAME option (nginx's server_name)
        server_name = _server_name(host)
        if server_name is None:
            server_name = server[0].encode()
    root, listener = _constant_vars(document_root, server, tls)
    fixed = _script_vars(script, root)
    server_vars = _VARS % (
        query, method, content_type,
        b"" if content_length is None else b"%d" % content_length,
        fixed.script_name, target, fixed.document_uri, listener,
        client[0].encode(),
        # port 0: a trusted proxy named the client without one; nginx leaves it empty
        b"%d" % client[1] if client[1] else b"",
        server_name, protocol, fixed.tail, extra_vars)
    # positional: a class called with keywords builds a dict of them first
    return PhpRequest(method, target, query, fixed.filename, server_vars, headers,
                      content_length, request_time, proto_num,
                      not has_body or content_length == 0, b"", script.worker)
