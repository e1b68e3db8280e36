"""What is requested: the document root, the five workloads and the load-generator commands."""

from __future__ import annotations

import hashlib
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


# bench/www/bootstrap.php: 30 modules x 10 services, each its own class file under app/
MODULES, SERVICES = 30, 10
CONFIG_ENTRIES = 2000


def _bootstrap_ok(d: dict[str, object]) -> bool:
    n = MODULES * SERVICES
    return d == {"config": CONFIG_ENTRIES, "services": n, "classes": n + 2,
                 "checksum": sum(1 + i % 7 for i in range(n)), "sample": 763}


def compute_answer() -> dict[str, object]:
    """What bench/www/compute.php answers, worked out again here."""
    h = "php-gateway"
    for i in range(5000):
        h = hashlib.md5(f"{h}{i}".encode()).hexdigest()
    rows = sorted(range(2000), key=lambda i: (-((i * 7919) % 1000), f"item{(i * 31) % 2000}"))
    order = hashlib.md5(",".join(map(str, rows)).encode()).hexdigest()
    return {"md5": h, "first": rows[0], "last": rows[-1], "order": order}


def write_bootstrap_app(docroot: Path) -> None:
    """The class files bench/www/bootstrap.php autoloads: a container, a base class, an
    interface and 300 services, each depending on the one before it in its module."""
    app = docroot / "app"
    (app / "Kernel").mkdir(parents=True)
    (app / "Kernel" / "ServiceInterface.php").write_text(
        "<?php\nnamespace App\\Kernel;\n\ninterface ServiceInterface\n{\n"
        "    public function handle(array $input): array;\n}\n")
    (app / "Kernel" / "AbstractService.php").write_text(
        "<?php\nnamespace App\\Kernel;\n\nabstract class AbstractService implements "
        "ServiceInterface\n{\n    public static function dependencies(): array\n    {\n"
        "        return [];\n    }\n\n    protected function option(array $config, string $key, "
        "mixed $default = null): mixed\n    {\n        return $config[$key] ?? $default;\n"
        "    }\n}\n")
    (app / "Kernel" / "Container.php").write_text(
        "<?php\nnamespace App\\Kernel;\n\nfinal class Container\n{\n"
        "    private array $factories = [];\n    private array $instances = [];\n\n"
        "    public function __construct(private array $config)\n    {\n    }\n\n"
        "    public function register(string $id): void\n    {\n"
        "        $this->factories[$id] = fn (Container $c) => new $id($c->config(), "
        "...array_map([$c, 'get'], $id::dependencies()));\n    }\n\n"
        "    public function config(): array\n    {\n        return $this->config;\n    }\n\n"
        "    public function ids(): array\n    {\n        return array_keys($this->factories);\n"
        "    }\n\n    public function get(string $id): object\n    {\n"
        "        return $this->instances[$id] ??= ($this->factories[$id])($this);\n    }\n}\n")
    for m in range(MODULES):
        (app / f"Module{m}").mkdir()
        for s in range(SERVICES):
            deps = f"[Service{s - 1}::class]" if s else "[]"
            (app / f"Module{m}" / f"Service{s}.php").write_text(f"""<?php
namespace App\\Module{m};

use App\\Kernel\\AbstractService;
use App\\Kernel\\ServiceInterface;

final class Service{s} extends AbstractService
{{
    public const NAME = 'module{m}.service{s}';
    private array $options;
    private array $deps;

    public function __construct(array $config, ServiceInterface ...$deps)
    {{
        $this->deps = $deps;
        $this->options = [
            'primary' => $this->option($config, 'module{m}.section{s % 6}.key{s}'),
            'secondary' => $this->option($config, 'module{m}.section{(s + 1) % 6}.key{s + 1}'),
            'missing' => $this->option($config, 'module{m}.nothing', 'fallback'),
        ];
    }}

    public static function dependencies(): array
    {{
        return {deps};
    }}

    public function handle(array $input): array
    {{
        $input['n'] += {(m * SERVICES + s) % 7};
        $input['by'] = self::NAME;
        return $input;
    }}
}}
""")


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
        # the engine itself: a framework-shaped boot, and pure computation
        Workload("bootstrap", "PHP bootstrap: 300 classes, 2k config", "/bootstrap.php",
                 check=_json_check(_bootstrap_ok)),
        Workload("compute", "PHP compute: md5 + usort", "/compute.php",
                 check=_json_check(lambda d: d == compute_answer())),
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
    write_bootstrap_app(docroot)
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
