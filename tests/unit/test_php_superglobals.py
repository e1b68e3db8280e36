"""Superglobals through the real pool: what nginx + php-fpm would give the script."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from php_harness import PHP_DIR

Runner = Any


def decode(body: bytes) -> dict[str, Any]:
    return json.loads(body)  # type: ignore[no-any-return]


async def test_cgi_variables_match_nginx_fastcgi_params(php: Runner) -> None:
    r = await php(
        "server.php",
        query="a=1&b=two",
        headers=[(b"user-agent", b"pytest/1"), (b"x-custom-thing", b"42"), (b"accept", b"*/*")],
    )
    assert r.status == 200
    s = decode(r.body)["server"]
    expected = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/server.php?a=1&b=two",
        "QUERY_STRING": "a=1&b=two",
        "SCRIPT_NAME": "/server.php",
        "SCRIPT_FILENAME": str(PHP_DIR / "server.php"),
        "PHP_SELF": "/server.php",
        "PATH_INFO": "",
        "DOCUMENT_ROOT": str(PHP_DIR),
        "DOCUMENT_URI": "/server.php",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "php-gateway",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "54321",
        "SERVER_ADDR": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_NAME": "example.test",
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "HTTP_HOST": "example.test:8080",
        "HTTP_USER_AGENT": "pytest/1",
        "HTTP_X_CUSTOM_THING": "42",
        "HTTP_ACCEPT": "*/*",
    }
    for key, value in expected.items():
        assert s.get(key) == value, key
    assert "HTTPS" not in s
    assert isinstance(s["REQUEST_TIME"], int)
    assert isinstance(s["REQUEST_TIME_FLOAT"], float)
    assert abs(s["REQUEST_TIME_FLOAT"] - s["REQUEST_TIME"]) < 1
    assert decode(r.body)["sapi"] == "fpm-fcgi"


async def test_https_and_path_info(php: Runner) -> None:
    r = await php("server.php", path_info="/users/7", tls=True, http_version="2")
    s = decode(r.body)["server"]
    assert s["HTTPS"] == "on"
    assert s["REQUEST_SCHEME"] == "https"
    assert s["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert s["PATH_INFO"] == "/users/7"
    assert s["PHP_SELF"] == "/server.php/users/7"
    assert s["PATH_TRANSLATED"] == str(PHP_DIR) + "/users/7"


async def test_header_with_underscore_is_dropped_like_nginx(php: Runner) -> None:
    r = await php("server.php", headers=[(b"x_forwarded_for", b"6.6.6.6"), (b"x-real", b"1")])
    s = decode(r.body)["server"]
    assert "HTTP_X_FORWARDED_FOR" not in s
    assert s["HTTP_X_REAL"] == "1"


async def test_repeated_headers_are_joined(php: Runner) -> None:
    r = await php(
        "server.php",
        headers=[(b"accept", b"text/html"), (b"accept", b"application/json"),
                 (b"cookie", b"a=1"), (b"cookie", b"b=2")],
    )
    d = decode(r.body)
    assert d["server"]["HTTP_ACCEPT"] == "text/html, application/json"
    assert d["cookie"] == {"a": "1", "b": "2"}


async def test_get_nested_arrays(php: Runner) -> None:
    r = await php("server.php", query="a[b][]=1&a[b][]=2&a[c]=x&list[]=p&list[]=q&plain=%C3%A9")
    d = decode(r.body)
    assert d["get"] == {"a": {"b": ["1", "2"], "c": "x"}, "list": ["p", "q"], "plain": "é"}


async def test_post_urlencoded_and_request_order(php: Runner) -> None:
    body = b"name=alice&tags[]=x&tags[]=y&same=post"
    r = await php(
        "server.php",
        body,
        method="POST",
        query="same=get&only_get=1",
        headers=[(b"content-type", b"application/x-www-form-urlencoded"), (b"cookie", b"sid=abc")],
    )
    d = decode(r.body)
    assert d["post"] == {"name": "alice", "tags": ["x", "y"], "same": "post"}
    assert d["cookie"] == {"sid": "abc"}
    # request_order=GP: POST overrides GET, cookies are not in $_REQUEST
    assert d["request"] == {"same": "post", "only_get": "1", "name": "alice", "tags": ["x", "y"]}
    assert d["server"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert d["server"]["CONTENT_LENGTH"] == str(len(body))
    assert d["server"]["HTTP_COOKIE"] == "sid=abc"


async def test_php_input_for_every_method(php: Runner) -> None:
    payload = b'{"k": [1, 2, 3], "bin": "\\u0000"}'
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"]:
        r = await php("server.php", payload, method=method,
                      headers=[(b"content-type", b"application/json")])
        d = decode(r.body)
        assert r.status == 200, method
        assert d["input"] == payload.decode(), method
        assert d["server"]["REQUEST_METHOD"] == method
        assert d["post"] == []


async def test_basic_auth(php: Runner) -> None:
    token = base64.b64encode(b"alice:s3cr:et").decode()
    r = await php("server.php", headers=[(b"authorization", f"Basic {token}".encode())])
    s = decode(r.body)["server"]
    assert s["PHP_AUTH_USER"] == "alice"
    assert s["PHP_AUTH_PW"] == "s3cr:et"
    assert s["HTTP_AUTHORIZATION"] == f"Basic {token}"


async def test_getallheaders(php: Runner) -> None:
    # named as php-fpm names them (from HTTP_* variables), whatever the client's case
    r = await php("server.php", headers=[(b"x-one", b"1"), (b"authorization", b"Bearer t"),
                                         (b"x-CamelCase", b"c"), (b"x_under", b"u")])
    assert decode(r.body)["headers"] == {"Host": "example.test:8080", "X-One": "1",
                                         "Authorization": "Bearer t", "X-Camelcase": "c"}


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, bytes]:
    boundary = b"----pg" + os.urandom(8).hex().encode()
    parts = []
    for name, value in fields.items():
        parts.append(
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode() + b"\r\n"
        )
    for name, (filename, data) in files.items():
        parts.append(
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
            + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        )
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    return body, b"multipart/form-data; boundary=" + boundary


async def test_multipart_upload_registered_and_removed(php: Runner, tmp_path: Path) -> None:
    import hashlib

    one = os.urandom(300_000)
    two = b"hello\x00world"
    files = {"f1": ("one.bin", one), "f2": ("two.txt", two)}
    body, ctype = multipart({"title": "two files"}, files)
    r = await php("upload.php", body, method="POST", query=f"dest={tmp_path}",
                  headers=[(b"content-type", ctype)])
    assert r.status == 200
    d = decode(r.body)
    for field, (name, data) in {"f1": ("one.bin", one), "f2": ("two.txt", two)}.items():
        e = d[field]
        assert e["name"] == name
        assert e["size"] == len(data)
        assert e["error"] == 0
        assert e["is_uploaded"] is True
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
        assert e["moved"] is True
        assert (tmp_path / name).read_bytes() == data
    assert d["_fake_moved"] is False
    assert d["_post"] == {"title": "two files"}
    # moved files are gone from the temp dir; let one upload stay unmoved to see cleanup
    body, ctype = multipart({}, {"keep": ("x.bin", b"abc")})
    r = await php("server.php", body, method="POST", headers=[(b"content-type", ctype)])
    tmp_name = decode(r.body)["files"]["keep"]["tmp_name"]
    assert tmp_name.startswith("/tmp/php")
    assert not Path(tmp_name).exists(), "upload temp file must be removed after the request"


async def test_request_parse_body_for_put_and_patch(php: Runner) -> None:
    body, ctype = multipart({"a": "1"}, {"doc": ("d.bin", b"x" * 1000)})
    r = await php("parse_body.php", body, method="PUT", headers=[(b"content-type", ctype)])
    d = decode(r.body)
    assert r.status == 200
    assert d["method"] == "PUT"
    assert d["post"] == {"a": "1"}
    assert d["files"]["doc"]["size"] == 1000
    r = await php("parse_body.php", b"x=1&y[]=2", method="PATCH",
                  headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    assert decode(r.body)["post"] == {"x": "1", "y": ["2"]}


async def test_body_handed_over_with_the_request(php_pool: Any) -> None:
    """A body that arrived whole goes in with submit; PHP parses it the same way."""
    from php_harness import php_request

    body = b"a=1&b[]=x&b[]=y"
    req = php_request("server.php", method="POST", content_length=len(body),
                      headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    req.body, req.body_complete = body, True
    call = php_pool.submit(req)
    await call.response()
    out = b""
    while data := await call.read():
        out += data
    d = decode(out)
    assert d["post"] == {"a": "1", "b": ["x", "y"]}
    assert d["server"]["CONTENT_LENGTH"] == str(len(body))
