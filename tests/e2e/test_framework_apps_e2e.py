"""A Laravel 8 and a Symfony 5.4 application (Debian's php-laravel-framework and php-symfony;
tests/apps/) served by php-gateway and by nginx + php-fpm 8.4 built from the same source,
every request of a user's session sent to both, and each answer compared: status, the
headers that matter and the body. Routes with parameters, views, sessions, a CSRF-protected
form with a validation redirect, JSON, an upload stored and downloaded, (encrypted)
cookies, `_method` spoofing, a streamed response, 404 and 500 pages."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from nginx_fpm import NginxFpm, start_nginx_fpm
from server_harness import Server, start_server

APPS = Path(__file__).resolve().parents[1] / "apps"
# Debian's packages the applications run on (scripts/install-system-deps.sh test)
FRAMEWORKS = {"laravel": Path("/usr/share/php/Illuminate/Foundation/Application.php"),
              "symfony": Path("/usr/share/php/Symfony/Bundle/FrameworkBundle/FrameworkBundle.php")}
# directories the application writes (cache, sessions, compiled views, uploads)
WRITABLE = {"laravel": ["bootstrap/cache", "storage/app", "storage/logs",
                        "storage/framework/sessions", "storage/framework/views"],
            "symfony": ["var"]}
# headers that differ by nature between two servers, or that only one of them adds itself
SERVER_OWN = {"date", "server", "connection", "keep-alive", "transfer-encoding",
              "content-length", "vary", "traceparent", "x-request-id", "accept-ranges"}
TOKEN = re.compile(r'(name="_token" value=")([^"]+)(")')
# a static file is the server's own answer: php-gateway adds Cache-Control (STATIC_CACHE_TTL)
# and X-Content-Type-Options; what the file is, and its validators, must match nginx's
STATIC_KEPT = {"content-type", "etag", "last-modified"}


@dataclass
class Pair:
    gateway: Server
    fpm: NginxFpm


def make_app(name: str, where: Path) -> Path:
    if not FRAMEWORKS[name].exists():
        pytest.fail(f"{FRAMEWORKS[name]} is missing: scripts/install-system-deps.sh test "
                    "installs php-laravel-framework and php-symfony")
    app = where / name
    shutil.copytree(APPS / name, app)
    for rel in WRITABLE[name]:
        (app / rel).mkdir(parents=True, exist_ok=True)
    for path in [app, *app.rglob("*")]:  # php-fpm's workers may run as another user
        path.chmod(0o777 if path.is_dir() else 0o666)
    return app / "public"


@pytest.fixture(scope="module", params=["laravel", "symfony"])
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pair]]:
    name: str = request.param
    base = tmp_path_factory.mktemp(name)
    gateway = start_server(base, make_app(name, base / "gateway"),
                           env={"INDEX_FILE": "index.php"})
    try:
        fpm = start_nginx_fpm(base / "nginx-fpm", make_app(name, base / "fpm"))
    except BaseException:
        gateway.stop()
        raise
    yield name, Pair(gateway, fpm)
    gateway.stop()
    fpm.stop()


@dataclass
class Seen:
    status: int
    headers: dict[str, list[str]]
    body: str


class Session:
    """One browser on each server, making the same requests; every answer compared."""

    def __init__(self, pair: Pair) -> None:
        # identity: the answers compared are the applications', not each server's gzip
        plain = {"accept-encoding": "identity"}
        self.clients = {
            "php-gateway": httpx.Client(base_url=pair.gateway.url, timeout=20, headers=plain),
            "nginx + php-fpm": httpx.Client(base_url=pair.fpm.url, timeout=20, headers=plain)}
        self.tokens: dict[str, str] = {}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def same(self, method: str, path: str, *, form: dict[str, str] | None = None,
             files: dict[str, tuple[str, bytes, str]] | None = None,
             token: bool = False, static: bool = False) -> Seen:
        """Sends the request to both servers; asserts the answers match; returns one."""
        seen = {}
        for name, client in self.clients.items():
            data = dict(form or {})
            if token:
                data["_token"] = self.tokens[name]
            reply = client.request(method, path, data=data or None, files=files)
            seen[name] = normalize(reply, str(client.base_url), static)
            found = TOKEN.search(reply.text)
            if found:  # the CSRF token this browser's session got
                self.tokens[name] = found.group(2)
        ours, theirs = seen["php-gateway"], seen["nginx + php-fpm"]
        assert ours == theirs, f"{method} {path}"
        return ours


def normalize(reply: httpx.Response, base: str, static: bool = False) -> Seen:
    headers: dict[str, list[str]] = {}
    for name, value in reply.headers.multi_items():
        name = name.lower()
        if name in SERVER_OWN or (static and name not in STATIC_KEPT):
            continue
        value = value.replace(base.rstrip("/"), "BASE")
        if name == "set-cookie":  # the name and attributes; values are random or encrypted
            crumbs = [c.strip() for c in value.split(";")]
            value = "; ".join([crumbs[0].split("=")[0] + "=…",
                               *sorted(c.split("=")[0].lower() for c in crumbs[1:])])
        elif name in ("expires", "last-modified"):
            value = "a date"
        elif name == "content-type" and static:
            value = value.split(";")[0]  # nginx adds no charset to a static file
        headers.setdefault(name, []).append(value)
    body = TOKEN.sub(r"\1TOKEN\3", reply.text.replace(base.rstrip("/"), "BASE"))
    return Seen(reply.status_code, {k: sorted(v) for k, v in sorted(headers.items())}, body)


@pytest.fixture
def browser(pair: tuple[str, Pair]) -> Iterator[Session]:
    session = Session(pair[1])
    yield session
    session.close()


def test_pages_routes_and_json(browser: Session) -> None:
    page = browser.same("GET", "/")
    assert page.status == 200 and "<h1>Welcome</h1>" in page.body
    assert browser.same("GET", "/app.css", static=True).body == "body { color: #333; }\n"
    hello = browser.same("GET", "/hello/world")
    assert "<h1>Hello, world!</h1>" in hello.body and "WORLD" in hello.body
    escaped = browser.same("GET", "/hello/%3Cb%3E")
    assert "&lt;b&gt;" in escaped.body and "<b>" not in escaped.body
    item = browser.same("GET", "/api/items/7")
    assert item.headers["content-type"] == ["application/json"]
    assert json.loads(item.body) == {"id": 7, "name": "item 7", "tags": ["a", "b"],
                                     "price": 10.5}


def test_session_and_cookies(browser: Session) -> None:
    for n in (1, 2, 3):
        assert browser.same("GET", "/counter").body == f"visits: {n}\n"
    cookie = browser.same("GET", "/cookie")
    assert any(c.startswith("flavour=") for c in cookie.headers["set-cookie"])
    assert browser.same("GET", "/cookie/read").body == "flavour: oatmeal\n"


def test_form_with_csrf_and_validation_redirect(browser: Session) -> None:
    form = browser.same("GET", "/form")
    assert 'name="_token" value="TOKEN"' in form.body
    refused = browser.same("POST", "/form", form={"name": "Al", "email": "x"})
    assert refused.status == 419  # no token: Laravel's "Page Expired", and the same here
    invalid = browser.same("POST", "/form", form={"name": "Al", "email": "not-an-email"},
                           token=True)
    assert invalid.status == 302  # back to the form: Laravel absolute, Symfony relative
    assert invalid.headers["location"] in (["BASE/form"], ["/form"])
    again = browser.same("GET", "/form")
    assert 'class="errors"' in again.body and 'value="not-an-email"' in again.body
    done = browser.same("POST", "/form", form={"name": "Alice", "email": "a@example.com"},
                        token=True)
    assert done.status == 302
    assert "Thanks, Alice!" in browser.same("GET", "/form").body


def test_upload_stored_and_downloaded(browser: Session) -> None:
    browser.same("GET", "/form")  # a token for this session
    content = b"quarterly numbers\n" * 100
    stored = browser.same("POST", "/upload", files={"doc": ("q3.txt", content, "text/plain")},
                          token=True)
    assert stored.status == 201
    info = json.loads(stored.body)
    assert (info["size"], info["original"]) == (len(content), "q3.txt")
    download = browser.same("GET", f"/download/{info['stored']}")
    assert download.status == 200 and download.body == content.decode()
    assert download.headers["content-disposition"] == ["attachment; filename=report.txt"]


def test_method_spoofing(browser: Session) -> None:
    browser.same("GET", "/form")
    put = browser.same("POST", "/items/5", form={"_method": "PUT"}, token=True)
    assert (put.status, put.body) == (200, "put 5\n")
    deleted = browser.same("POST", "/items/5", form={"_method": "DELETE"}, token=True)
    assert (deleted.status, deleted.body) == (200, "deleted 5\n")


def test_streamed_response(browser: Session, pair: tuple[str, Pair]) -> None:
    streamed = browser.same("GET", "/stream")
    assert streamed.body == "chunk 1\nchunk 2\nchunk 3\n"
    arrivals = []  # and php-gateway passes each flush() on as it comes
    with httpx.stream("GET", pair[1].gateway.url + "/stream", timeout=20) as reply:
        for _ in reply.iter_raw():
            arrivals.append(time.monotonic())
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.15


def test_error_pages(browser: Session) -> None:
    missing = browser.same("GET", "/no/such/page")
    assert missing.status == 404 and "Not Found" in missing.body
    failed = browser.same("GET", "/fail")
    assert failed.status == 500 and "boom" not in failed.body  # debug off: no details
