"""What is requested: the document root, the five workloads and the load-generator commands."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC_NAME = "static-100k.bin"
STATIC_SIZE = 100 * 1024
BIG_SIZE = 1024 * 1024
PAGE_NAME = "page30k.html"  # bench/www/page30k.php renders the same bytes
POST_SIZE = 10 * 1024
POST_FIELDS = 100
COOKIE = "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark; consent=yes; tz=UTC; ab=b"
QUERY = "page=2&sort=desc&limit=50&lang=en&q=php+gateway"


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    post_body: Path | None = None  # set by prepare_docroot for the POST workload
    check: Callable[[bytes], bool] = lambda body: True  # is this the right answer?
    encoding: str = ""  # the Content-Encoding the answer must have (Accept-Encoding sent)


def _json_check(pred: Callable[[dict[str, object]], bool]) -> Callable[[bytes], bool]:
    def check(body: bytes) -> bool:
        try:
            return pred(json.loads(body))
        except ValueError:
            return False

    return check


def _superglobals_ok(d: dict[str, object]) -> bool:
    get, cookie = d.get("get"), d.get("cookie")
    return (
        isinstance(get, dict) and get.get("q") == "php gateway"
        and isinstance(cookie, dict) and cookie.get("theme") == "dark"
    )


def post_body() -> bytes:
    """10 KiB urlencoded form: 100 fields with percent-escapes, padded to exactly 10240 bytes."""
    parts = []
    for i in range(POST_FIELDS):
        parts.append(f"field{i:02d}=" + "value%20" + "abcdefghijklmnopqrstuvwxyz"[i % 26] * 80)
    body = "&".join(parts)
    return (body + "x" * (POST_SIZE - len(body))).encode()


def html_page() -> bytes:
    """The 30 KiB page bench/www/page30k.php renders, byte for byte."""
    out = "<!doctype html>\n<html><head><title>Catalogue</title></head><body><table>\n"
    i = 0
    while len(out) < 30 * 1024:
        out += (f'<tr class="row"><td>{i}</td><td><a href="/item/{i}">Item {i}</a></td>'
                f"<td>{(i * 7919) % 10007}</td></tr>\n")
        i += 1
    return (out + "</table></body></html>\n").encode()


def _compressed(key: str, label: str, path: str, coding: str) -> Workload:
    page = html_page()
    return Workload(key, label, path, headers=(("Accept-Encoding", coding),),
                    check=lambda body: body == page, encoding=coding)


def workloads(run: Path) -> list[Workload]:
    return [
        Workload("hello", "hello.php", "/hello.php", check=lambda b: b == b"Hello, World!"),
        Workload(
            "superglobals", "30 superglobals → JSON", f"/superglobals.php?{QUERY}",
            headers=(("Cookie", COOKIE),), check=_json_check(_superglobals_ok),
        ),
        Workload("static", "static 100 KB", f"/{STATIC_NAME}",
                 check=lambda b: len(b) == STATIC_SIZE),
        Workload("big", "PHP 1 MB response", "/big.php", check=lambda b: len(b) == BIG_SIZE),
        Workload(
            "post", "POST 10 KB urlencoded", "/post.php",
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            post_body=run / "post-body.txt",
            check=_json_check(lambda d: d.get("fields") == POST_FIELDS),
        ),
        # compression: nginx `gzip on` (and its brotli module when installed) beside ours
        _compressed("page-gzip", "PHP 30 KB HTML, gzip", "/page30k.php", "gzip"),
        _compressed("static-gzip", "static 30 KB HTML, gzip", f"/{PAGE_NAME}", "gzip"),
        _compressed("page-br", "PHP 30 KB HTML, br", "/page30k.php", "br"),
        _compressed("static-br", "static 30 KB HTML, br", f"/{PAGE_NAME}", "br"),
    ]


def prepare_docroot(run: Path) -> Path:
    """Copies bench/www and adds the generated files; both servers serve this one directory."""
    docroot = run / "www"
    shutil.copytree(HERE / "www", docroot)
    # Incompressible bytes, so no server wins by compressing; seeded, so every run is alike.
    (docroot / STATIC_NAME).write_bytes(random.Random(100).randbytes(STATIC_SIZE))
    (docroot / PAGE_NAME).write_bytes(html_page())
    (run / "post-body.txt").write_bytes(post_body())
    (run / "post.lua").write_text(
        "-- wrk: POST the 10 KiB urlencoded form on every request\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'local f = assert(io.open("{run / "post-body.txt"}", "rb"))\n'
        "wrk.body = f:read(\"*a\")\n"
        "f:close()\n"
    )
    run.chmod(0o755)  # nginx and fpm workers may run as another user
    return docroot


@dataclass(frozen=True)
class LoadSettings:
    duration_s: int
    wrk_threads: int
    wrk_connections: int
    h2_clients: int
    h2_streams: int
    load_cpu_prefix: tuple[str, ...] = ()


def _secs(d: int) -> str:
    # wrk takes no sub-second durations, so whole seconds for both tools
    return f"{max(1, d)}s"


def wrk_argv(w: Workload, url: str, s: LoadSettings, duration_s: int, run: Path) -> list[str]:
    argv = [*s.load_cpu_prefix, "wrk", f"-t{s.wrk_threads}", f"-c{s.wrk_connections}",
            f"-d{_secs(duration_s)}", "--latency"]
    for name, value in w.headers:
        if w.post_body is None or name != "Content-Type":  # post.lua sets it
            argv += ["-H", f"{name}: {value}"]
    if w.post_body is not None:
        argv += ["-s", str(run / "post.lua")]
    return [*argv, url]


def h2load_argv(w: Workload, url: str, s: LoadSettings, duration_s: int, log: Path,
                *, h1: bool = False, requests: int | None = None,
                clients: int | None = None) -> list[str]:
    argv = [*s.load_cpu_prefix, "h2load", "-t1", f"-c{clients or s.h2_clients}"]
    if requests is None:
        argv += [f"-m{s.h2_streams}", "-D", _secs(duration_s), f"--log-file={log}"]
    else:
        argv += [f"-n{requests}"]
    if h1:
        argv.append("--h1")
    for name, value in w.headers:
        argv += ["-H", f"{name.lower()}: {value}"]
    if w.post_body is not None:
        argv += ["-d", str(w.post_body)]
    return [*argv, url]
