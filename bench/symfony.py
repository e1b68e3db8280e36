"""Worker mode on a framework: one Symfony 5.4 route (bench/symfony: HttpKernel + Routing from
Debian's php-symfony-* packages, container and routes compiled into its cache) served three
ways with the same PHP capacity: nginx + php-fpm 8.4, php-gateway classic, php-gateway worker.

    bench/run.sh --symfony [--duration 20] [--rounds 3] [--connections 32] [--php-workers N]

Each round measures every server in turn with wrk over HTTP/1.1 keep-alive (after a warm-up
that also fills OPcache and the Symfony cache), in a rotating order; the table gives the
median round. Results go to bench/results/symfony-<time>/ and, for a full run, to the
"Symfony: worker mode" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.parsers import LoadResult, parse_wrk
from bench.servers import Endpoints, Gateway, NginxFpm, Server, free_port

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "bench" / "symfony"
ROUTE = "/product/42"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Symfony: worker mode"
TARGET_RATIO = 3.0  # issue 13: worker mode at least 3x nginx + php-fpm, p99 below it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.sh --symfony", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=20, help="seconds measured per cell")
    p.add_argument("--warmup", type=int, default=3, help="seconds of load before each cell")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--php-workers", type=int, default=os.cpu_count() or 1,
                   help="PHP threads (php-gateway) = php-fpm children")
    p.add_argument("--fpm-prefix", help="php-fpm 8.4 install (default: build-php.sh's cache)")
    p.add_argument("--quick", action="store_true", help="5 s cells, 1 round, docs untouched")
    return p.parse_args(argv)


def fpm_prefix(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    out = subprocess.run([str(REPO / "scripts" / "build-php.sh")], capture_output=True,
                         text=True, env={**os.environ, "PHP_VARIANT": "fpm"}, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def prepare_app(work: Path) -> Path:
    """A copy of the application whose var/ (the compiled container) belongs to this run."""
    app = work / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("var"))
    (app / "var").mkdir()
    for path in [work, *work.rglob("*")]:  # php-fpm's and nginx's workers may be another user
        path.chmod(0o777 if path.is_dir() else 0o666)
    return app / "public"


def make_certs(run: Path) -> tuple[Path, Path]:
    import trustme

    cert = trustme.CA().issue_cert("127.0.0.1")
    cert_path, key_path = run / "cert.pem", run / "key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def build_servers(a: argparse.Namespace, run: Path, public: Path) -> list[Server]:
    cert, key = make_certs(run)
    prefix = fpm_prefix(a.fpm_prefix)
    ext_dir = subprocess.run([str(prefix / "bin" / "php-config"), "--extension-dir"],
                             capture_output=True, text=True, check=True).stdout.strip()
    common = {"cert": cert, "key_file": key, "php_workers": a.php_workers}
    return [
        NginxFpm("fpm", "nginx + php-fpm 8.4 (classic)", Endpoints(free_port(), free_port()),
                 run, [], fpm_binary=prefix / "sbin" / "php-fpm",
                 fpm_ini_args=["-d", f"extension_dir={ext_dir}", "-d", "zend_extension=opcache"],
                 docroot=public, nginx_workers=1, front_controller="index.php", **common),
        Gateway("classic", "php-gateway classic", Endpoints(free_port(), free_port()), run, [],
                docroot=public, extra_args=["--index-file", "index.php"], **common),
        Gateway("worker", "php-gateway worker mode", Endpoints(free_port(), free_port()), run,
                [], docroot=public,
                extra_args=["--worker-script", str(public / "worker.php")], **common),
    ]


def fetch(server: Server) -> tuple[int, bytes]:
    url = server.endpoints.url(False, ROUTE)
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def wrk(server: Server, a: argparse.Namespace, seconds: int) -> LoadResult:
    argv = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s", "--latency",
            server.endpoints.url(False, ROUTE)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.quick:
        a.duration, a.rounds, a.warmup = 5, 1, 2
    run = REPO / "bench" / "results" / time.strftime("symfony-%Y%m%d-%H%M%S")
    run.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="pg-symfony-"))  # configs, logs, the app's cache
    public = prepare_app(work)
    servers = build_servers(a, work, public)
    results: dict[str, list[LoadResult]] = {s.key: [] for s in servers}
    expected: bytes | None = None
    try:
        for s in servers:
            s.start()
            status, body = fetch(s)  # the first request also compiles the container
            if status != 200 or (expected is not None and body != expected):
                raise SystemExit(f"{s.label}: wrong answer for {ROUTE}: {status} {body[:200]!r}")
            expected = body
            s.stop()
        for rnd in range(a.rounds):
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
            for s in order:
                s.procs_.clear()
                s.start()
                try:
                    wrk(s, a, a.warmup)
                    r = wrk(s, a, a.duration)
                finally:
                    s.stop()
                results[s.key].append(r)
                print(f"round {rnd + 1} {s.label}: {r.rps:.0f} req/s, p99 {_ms(r.p99_ms)} ms, "
                      f"errors {r.errors}", file=sys.stderr)
    finally:
        for s in servers:
            s.stop()
        for s in servers:  # what each server ran with, beside the numbers
            for name, text in s.config_files().items():
                (run / f"{s.key}-{name}").write_text(text)
        shutil.rmtree(work, ignore_errors=True)
    md = report(a, servers, results, argv if argv is not None else sys.argv[1:])
    (run / "results.md").write_text(md)
    (run / "results.json").write_text(json.dumps(
        {k: [r.__dict__ for r in v] for k, v in results.items()}, indent=1))
    print(md)
    if not a.quick:
        update_doc(md)
    return 0


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def median_result(rs: list[LoadResult]) -> LoadResult:
    return sorted(rs, key=lambda r: r.rps)[len(rs) // 2]


def report(a: argparse.Namespace, servers: list[Server], results: dict[str, list[LoadResult]],
           argv: list[str]) -> str:
    fpm = median_result(results["fpm"])
    lines = [
        SECTION, "",
        f"`bench/run.sh --symfony {' '.join(argv)}`".replace(" `", "`"),
        "",
        f"{ROUTE} of bench/symfony (Symfony 5.4 HttpKernel + Routing from Debian's packages, "
        "container and routes compiled in its cache, a 835-byte HTML page); wrk "
        f"-t{a.threads} -c{a.connections} over HTTP/1.1 keep-alive, {a.duration} s per cell "
        f"after {a.warmup} s of warm-up, median of {a.rounds} rounds in rotating order; "
        f"{a.php_workers} PHP threads = php-fpm children (pm = static), OPcache on in both; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load "
        "generator on the same machine.",
        "",
        "| server | req/s | vs nginx + php-fpm | p50 ms | p99 ms | errors | every round (req/s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in servers:
        r = median_result(results[s.key])
        rounds = ", ".join(f"{x.rps:.0f}" for x in results[s.key])
        lines.append(f"| {s.label} | {r.rps:.0f} | {r.rps / fpm.rps:.2f}x | {_ms(r.p50_ms)} | "
                     f"{_ms(r.p99_ms)} | {r.errors} | {rounds} |")
    worker = median_result(results["worker"])
    met = worker.rps >= TARGET_RATIO * fpm.rps and (worker.p99_ms or 0) < (fpm.p99_ms or 0)
    lines += ["", f"Target (worker mode >= {TARGET_RATIO:.0f}x nginx + php-fpm req/s, p99 "
                  f"below it): {'met' if met else 'NOT met'}.", ""]
    lines += ["Servers as started:", ""]
    for s in servers:
        lines += [f"- {s.label}: `{c}`" for c in s.commands]
    return "\n".join(lines) + "\n"


def update_doc(md: str) -> None:
    text = DOC.read_text()
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + md
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + md + (text[end + 1:] if end >= 0 else "")
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
