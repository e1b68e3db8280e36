"""php-gateway vs nginx + php-fpm on 127.0.0.1: same document root, same PHP worker count.

Run through bench/run.sh (it installs what this needs). Every (workload, protocol) cell is
loaded against each server in turn, round after round, so drift on the machine hits every
server alike. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import re
import resource
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs, report
from bench.parsers import LoadResult, ParseError, h2load_result, parse_h2load, parse_wrk
from bench.servers import PHP_INI, REPO, Endpoints, Gateway, NginxFpm, Server, free_port
from bench.workloads import (
    LoadSettings,
    Workload,
    h2load_argv,
    prepare_docroot,
    workloads,
    wrk_argv,
)

GATEWAY = "gateway"
FPM84 = "fpm84"
FPM82 = "fpm82"
LABELS = {
    GATEWAY: "php-gateway",
    FPM84: "nginx + php-fpm 8.4",
    FPM82: "nginx + php-fpm 8.2 (Debian)",
}
# --defaults: each side as it comes, no sizing or tuning
DEFAULTS_LABELS = {
    GATEWAY: "php-gateway, no options",
    FPM84: "nginx + php-fpm 8.4, Debian's configuration",
    FPM82: "nginx + php-fpm 8.2, as Debian ships it",
}
PROTOCOLS = ("h1", "h2")
DOCS = REPO / "docs" / "benchmarks.md"
# What an operator sets so nginx keeps a 10 KB form and a 1 MB PHP answer in memory instead of
# temp files (stock 1.22 spills both; measured: +50% req/s on the 1 MB page, +30% on h2 POST).
# The baseline should be nginx at its reasonable best; --nginx-extra '' gives the stock one.
NGINX_EXTRA = ("client_body_buffer_size 128k; fastcgi_buffer_size 32k; fastcgi_buffers 64 16k; "
               "fastcgi_busy_buffers_size 64k;")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 s per cell, 1 round, 20k-request soak, results go to "
                   "the run directory")
    p.add_argument("--duration", type=int, help="seconds per cell (default 5, quick 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--warmup", type=int,
                   help="seconds of unmeasured load per cell before round 1 (default 1)")
    p.add_argument("--servers", default=f"{GATEWAY},{FPM84},{FPM82}",
                   help=f"comma list of {GATEWAY},{FPM84},{FPM82}")
    p.add_argument("--workloads", default="hello,superglobals,static,big,post,bootstrap,compute,"
                   "page-gzip,static-gzip,page-br,static-br")
    p.add_argument("--protocols", default="h1,h2")
    p.add_argument("--php-workers", type=int, default=2 * cores,
                   help="PHP threads in php-gateway = php-fpm pm.max_children (default 2 x cores)")
    p.add_argument("--processes", type=int, default=cores,
                   help="php-gateway worker processes = nginx worker_processes (default: cores)")
    p.add_argument("--nginx-extra", default=NGINX_EXTRA,
                   help="extra directives for nginx's http block (default: %(default)r)")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--h2-clients", type=int, default=10, help="h2load -c")
    p.add_argument("--h2-streams", type=int, default=10, help="h2load -m")
    p.add_argument("--pin", choices=("none", "split"), default="none",
                   help="split: servers on CPU 0, load generator on CPU 1 (taskset)")
    p.add_argument("--soak-requests", type=int, help="requests in the php-gateway soak "
                   "(default 200000, quick 20000; 0 = no soak)")
    p.add_argument("--fpm-prefix", default=os.environ.get("PHP_FPM_PREFIX"),
                   help="NTS PHP 8.4 install with sbin/php-fpm (default: PHP_VARIANT=fpm "
                   "scripts/build-php.sh, cached)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results; quick "
                   "runs: the run directory, so they never replace published numbers)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (configs, logs)")
    p.add_argument("--defaults", action="store_true",
                   help="out of the box: php-gateway without sizing options against nginx + "
                   "php-fpm as Debian ships them (nginx worker_processes auto, the www pool's pm "
                   "= dynamic with 5 children; fpm 8.2 with Debian's php.ini); results in "
                   "bench/results/defaults.*")
    a = p.parse_args(argv)
    # Three short rounds rather than two long ones: on a shared 2-core box noise comes in
    # bursts, and the median of three drops the round a burst hit.
    a.duration = a.duration or (2 if a.quick else 5)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.warmup = a.warmup if a.warmup is not None else 1
    if a.soak_requests is None:
        a.soak_requests = 20_000 if a.quick else 200_000
    return a


def sh(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return {
        "cores": os.cpu_count(),
        "cpu": model.group(1) if model else platform.processor(),
        "memory_gib": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": sh(["wrk", "-v"]).splitlines()[0],
        "h2load": sh(["h2load", "--version"]),
        "nginx": sh(["nginx", "-v"]),
    }


def fpm84_prefix(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    out = subprocess.run([str(REPO / "scripts" / "build-php.sh")], capture_output=True,
                         text=True, env={**os.environ, "PHP_VARIANT": "fpm"}, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def make_certs(run: Path) -> tuple[Path, Path, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = run / "ca.pem", run / "cert.pem", run / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    return ca_path, cert_path, key_path


def build_servers(a: argparse.Namespace, run: Path, docroot: Path, cert: Path,
                  key: Path) -> list[Server]:
    cores = os.cpu_count() or 1
    cpu = ["taskset", "-c", "0"] if a.pin == "split" and cores > 1 else []
    stock = a.defaults  # Debian's configuration on the nginx side, none on ours
    extra = "" if stock else a.nginx_extra
    wanted = a.servers.split(",")
    servers: list[Server] = []
    for k in wanted:
        ep = Endpoints(free_port(), free_port())
        if k == GATEWAY:
            servers.append(Gateway(k, LABELS[k], ep, run, cpu, docroot=docroot,
                                   php_workers=a.php_workers, processes=a.processes,
                                   cert=cert, key_file=key, sized=not stock))
        elif k == FPM84:
            prefix = fpm84_prefix(a.fpm_prefix)
            ext_dir = sh([str(prefix / "bin" / "php-config"), "--extension-dir"])
            # Same php.ini as php-gateway; OPcache is a shared extension in both builds.
            ini = ["-d", f"extension_dir={ext_dir}", "-d", "zend_extension=opcache"]
            servers.append(NginxFpm(k, LABELS[k], ep, run, cpu, fpm_binary=prefix / "sbin" /
                                    "php-fpm", fpm_ini_args=ini, docroot=docroot,
                                    php_workers=a.php_workers, nginx_workers=a.processes,
                                    cert=cert, key_file=key, nginx_extra=extra, stock=stock))
        elif k == FPM82:
            # Debian's build loads OPcache from its own conf.d scan directory.
            servers.append(NginxFpm(k, LABELS[k], ep, run, cpu,
                                    fpm_binary=Path("/usr/sbin/php-fpm8.2"), docroot=docroot,
                                    php_workers=a.php_workers, nginx_workers=a.processes,
                                    cert=cert, key_file=key, nginx_extra=extra, stock=stock,
                                    php_ini=None if stock else PHP_INI))
        else:
            raise SystemExit(f"unknown server {k!r}; choose from {', '.join(LABELS)}")
    return servers


def smoke(server: Server, ws: list[Workload], ca: Path) -> dict[tuple[str, str], str]:
    """Asks every workload once over both protocols; returns what answered wrongly."""
    import httpx

    ctx = ssl.create_default_context(cafile=str(ca))
    bad: dict[tuple[str, str], str] = {}
    with httpx.Client(http2=True, verify=ctx, timeout=30) as c:
        for w in ws:
            for proto in PROTOCOLS:
                url = server.endpoints.url(proto == "h2", w.path)
                body = w.post_body.read_bytes() if w.post_body else None
                # as wrk and h2load: no Accept-Encoding unless the workload names one
                headers = {"Accept-Encoding": "identity", **dict(w.headers)}
                try:
                    r = c.request("POST" if body else "GET", url, headers=headers, content=body)
                except httpx.HTTPError as e:
                    bad[(w.key, proto)] = f"{type(e).__name__}: {e}"
                    continue
                want = "HTTP/2" if proto == "h2" else "HTTP/1.1"
                if (r.status_code != 200 or r.http_version != want or not w.check(r.content)
                        or r.headers.get("content-encoding", "") != w.encoding):
                    bad[(w.key, proto)] = (f"{r.http_version} {r.status_code}, "
                                           f"content-encoding "
                                           f"{r.headers.get('content-encoding', 'none')}, "
                                           f"{len(r.content)} bytes: {r.content[:120]!r}")
    return bad


def php_info(server: Server, ca: Path) -> dict[str, Any]:
    import httpx

    r = httpx.get(server.endpoints.url(False, "/opcache.php"), timeout=10)
    info: dict[str, Any] = r.json()
    return info


def run_load(w: Workload, proto: str, server: Server, settings: LoadSettings, duration: int,
             run: Path, raw: Path | None) -> tuple[str, LoadResult, str | None]:
    """One load-generator run: its exact command line, parsed result and TLS version+cipher."""
    url = server.endpoints.url(proto == "h2", w.path)
    if proto == "h1":
        argv = wrk_argv(w, url, settings, duration, run)
    else:
        log = run / "h2load-requests.log"
        argv = h2load_argv(w, url, settings, duration, log)
    cmd = shlex.join(argv)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if raw is not None:
        raw.write_text(f"$ {cmd}\n{out.stdout}{out.stderr}")
    if out.returncode != 0:
        raise RuntimeError(f"exit {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")
    if proto == "h1":
        return cmd, parse_wrk(out.stdout), None
    summary = parse_h2load(out.stdout)
    if summary.protocol != "h2":
        raise RuntimeError(f"h2load negotiated {summary.protocol}, not h2")
    with log.open() as f:
        result = h2load_result(out.stdout, f)
    if raw is not None:  # a sample of the per-request log, to check the latency columns by eye
        with log.open() as f, raw.open("a") as r:
            r.write("# --log-file, first lines:\n" + "".join(f.readline() for _ in range(10)))
    log.unlink()
    return cmd, result, summary.tls


def soak(server: Server, w_list: list[Workload], settings: LoadSettings, total: int,
         run: Path) -> dict[str, Any]:
    """`total` requests over HTTP/1.1 keep-alive in 4 chunks; RSS of the tree between chunks.

    Alternates the superglobals GET and the form POST: the two paths that allocate most per
    request (superglobal arrays, the body buffer, $_POST).
    """
    chunks, per_load = 4, max(1, total // 8)
    samples = [procs.tree_rss(server.root_pids())]
    commands: list[str] = []
    errors = 0
    done = 0
    statuses: dict[str, int] = {}
    started = time.monotonic()
    for _ in range(chunks):
        for w in w_list:
            argv = h2load_argv(w, server.endpoints.url(False, w.path), settings, 0, run / "x",
                               h1=True, requests=per_load, clients=settings.wrk_connections)
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if len(commands) < len(w_list):
                commands.append(shlex.join(argv))
            s = parse_h2load(out.stdout)
            errors += s.total - s.succeeded  # failed, errored, and never answered
            done += s.total
            for k, v in (("2xx", s.status_2xx), ("4xx", s.status_4xx), ("5xx", s.status_5xx)):
                statuses[k] = statuses.get(k, 0) + v
        samples.append(procs.tree_rss(server.root_pids()))
    return {
        "requests": done, "errors": errors, "seconds": round(time.monotonic() - started, 1),
        "rss_before": samples[0], "rss_after": samples[-1], "growth": samples[-1] - samples[0],
        "rss_samples": samples, "commands": commands, "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    name = "latest"
    if a.defaults:
        LABELS.update(DEFAULTS_LABELS)
        a.soak_requests, name = 0, "defaults"
    started = dt.datetime.now(dt.UTC)
    run = Path(tempfile.mkdtemp(prefix="php-gateway-bench-"))
    rawdir = run / "raw"
    rawdir.mkdir()
    out_dir: Path = a.out or (run / "results" if a.quick else REPO / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"bench: run directory {run}", flush=True)

    docroot = prepare_docroot(run)
    ca, cert, key = make_certs(run)
    all_ws = workloads(run)
    wanted_w = a.workloads.split(",")
    ws = [w for w in all_ws if w.key in wanted_w]
    protos = [p for p in a.protocols.split(",") if p in PROTOCOLS]
    load_cpu = ("taskset", "-c", "1") if a.pin == "split" and (os.cpu_count() or 1) > 1 else ()
    settings = LoadSettings(a.duration, a.wrk_threads, a.connections, a.h2_clients, a.h2_streams,
                            load_cpu)

    servers = build_servers(a, run, docroot, cert, key)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "labels": LABELS,
        "workloads": {w.key: w.label for w in ws},
        "servers": {},
    }
    skip: dict[tuple[str, str, str], str] = {}
    incidents: list[str] = []
    meta["incidents"] = incidents
    live: list[Server] = []
    try:
        for s in servers:
            print(f"bench: starting {s.label}", flush=True)
            try:
                s.start()
            except Exception as e:  # a server that cannot start is reported, not fatal
                print(f"bench: {s.label} failed to start: {e}", file=sys.stderr)
                meta["servers"][s.key] = {"label": s.label, "error": str(e),
                                          "commands": s.commands}
                s.stop()
                continue
            live.append(s)
            bad = smoke(s, ws, ca)
            for (wk, proto), why in bad.items():
                print(f"bench: {s.label} answers {wk}/{proto} wrongly, not loading it: {why}",
                      file=sys.stderr)
                skip[(s.key, wk, proto)] = f"wrong answer in smoke check: {why}"
            meta["servers"][s.key] = {"label": s.label, "version": s.version(),
                                      "php": php_info(s, ca), "commands": s.commands,
                                      "configs": s.config_files()}

        cells: list[report.Cell] = []
        n_cells = len(ws) * len(protos) * len(live) * a.rounds
        eta = n_cells * (a.duration + 0.7) + (a.warmup + 0.7) * n_cells / a.rounds
        print(f"bench: {n_cells} cells of {a.duration:g}s, ~{eta / 60:.1f} min before the soak",
              flush=True)
        for rnd in range(a.rounds):
            for w in ws:
                for proto in protos:
                    # Rotate who goes first each round, so no server always follows another.
                    order = live[rnd % len(live):] + live[: rnd % len(live)] if live else []
                    for s in order:
                        cells.append(measure(s, w, proto, rnd, a, settings, run, rawdir, skip))
                        if s.alive() and healthy(s):
                            continue
                        # A wedged or dead server would fail every later cell too: say so,
                        # then restart it so the rest of the run still measures something.
                        what = "exited" if not s.alive() else "stopped answering GET /hello.php"
                        incidents.append(f"{s.label} {what} after {w.key}/{proto} round "
                                         f"{rnd + 1}; restarted")
                        print(f"bench: {incidents[-1]}", file=sys.stderr, flush=True)
                        s.stop()
                        s.procs_.clear()
                        s.start()

        soak_result = None
        gw = next((s for s in live if s.key == GATEWAY), None)
        if a.soak_requests and gw is not None and gw.alive():
            print(f"bench: soak, {a.soak_requests:,} requests against php-gateway", flush=True)
            soak_ws = [w for w in all_ws if w.key in ("superglobals", "post")]
            soak_result = soak(gw, soak_ws, settings, a.soak_requests, run)
    finally:
        for s in live:
            s.stop()

    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows = report.reduce(cells, os.cpu_count() or 1)
    present = {r.server for r in rows}
    # Same PHP version as ours first; Debian's 8.2 only when 8.4 was not run. Out of the box,
    # what Debian ships is the baseline.
    order = (FPM82, FPM84) if a.defaults else (FPM84, FPM82)
    baseline = next((k for k in order if k in present), order[0])
    ratio_rows = report.ratios(rows, GATEWAY, baseline)
    labels = {k: LABELS[k] for k in a.servers.split(",")}
    wl = {w.key: w.label for w in ws}
    print()
    print(report.plain_table(rows, labels, wl))
    for x in ratio_rows:
        print(f"  php-gateway / {LABELS[baseline]}: {x['workload']:13} {x['protocol']} "
              f"req/s {report._f(x['rps'], '.2f')}x  p99 {report._f(x['p99'], '.2f')}x  "
              f"RSS {report._f(x['rss'], '.2f')}x")
    if soak_result:
        print(f"  soak: {soak_result['requests']:,} requests, {soak_result['errors']} errors, RSS "
              f"{soak_result['rss_before'] / report.MIB:.1f} → "
              f"{soak_result['rss_after'] / report.MIB:.1f} MiB")

    md = results_markdown(meta, rows, ratio_rows, cells, soak_result, labels, wl, baseline)
    (out_dir / f"{name}.md").write_text(md)
    report.write_json(out_dir / f"{name}.json", meta, cells, rows, ratio_rows, soak_result)
    if ratio_rows:
        report.chart(out_dir / ("defaults.png" if a.defaults else "ratios.png"), ratio_rows, wl,
                     f"php-gateway ÷ {LABELS[baseline]} — {meta['machine']['cores']} cores, "
                     f"{meta['started'][:10]}")
    if not a.quick and a.out is None:
        update_docs(md, "defaults" if a.defaults else "results")
    print(f"bench: results in {out_dir}", flush=True)
    if meta["incidents"] or any(c.error for c in cells):
        print(f"bench: failures; server logs kept in {run}", flush=True)
    elif not a.keep and not a.quick:
        shutil.rmtree(run, ignore_errors=True)
    return 0


def measure(s: Server, w: Workload, proto: str, rnd: int, a: argparse.Namespace,
            settings: LoadSettings, run: Path, rawdir: Path,
            skip: dict[tuple[str, str, str], str]) -> report.Cell:
    cell = report.Cell(s.key, w.key, proto, rnd, command="")
    if (s.key, w.key, proto) in skip:
        cell.error = skip[(s.key, w.key, proto)]
        return cell
    if not s.alive():
        cell.error = "server process exited"
        return cell
    try:
        if rnd == 0 and a.warmup > 0:
            run_load(w, proto, s, settings, a.warmup, run, None)
        raw = rawdir / f"{s.key}-{w.key}-{proto}-{rnd}.txt"
        load0, self0 = _children_cpu(), _self_cpu()
        with procs.MemorySampler(s.root_pids()) as mem:
            cell.command, cell.result, cell.tls = run_load(
                w, proto, s, settings, a.duration, run, raw)
        own = _self_cpu() - self0  # this driver: the sampler thread, parsing
        cell.peak_rss, cell.peak_pss = mem.peak_rss, mem.peak_pss
        cell.pss_by_role = mem.pss_by_role
        cell.server_cpu_s = round(mem.server_cpu, 2)
        cell.load_cpu_s = round(_children_cpu() - load0, 2)
        cell.other_cpu_s = round(
            max(0.0, mem.machine_cpu - mem.server_cpu - cell.load_cpu_s - own), 2)
    except (RuntimeError, ParseError, subprocess.TimeoutExpired, OSError) as e:
        cell.error = str(e)
    if cell.result is not None and cell.result.errors:
        cell.note = probe(s, w, proto)
    if cell.result is not None and cell.result.requests == 0:
        # 0 req/s is a result (it counts in the mean), but its "latency" is not
        cell.result = dataclasses.replace(cell.result, p50_ms=None, p99_ms=None)
        cell.error = "not one response during the run"
    r = cell.result
    status = (f"{r.rps:>10,.0f} req/s  p50 {r.p50_ms or 0:6.2f} ms  p99 {r.p99_ms or 0:7.2f} ms  "
              f"errors {r.errors}  RSS {cell.peak_rss / report.MIB:.0f} MiB  CPU s: server "
              f"{cell.server_cpu_s:.1f} load {cell.load_cpu_s:.1f} other {cell.other_cpu_s:.1f}"
              if r else "")
    if cell.error:
        status += f"  FAILED: {cell.error}"
    if cell.note:
        status += f"  ({cell.note})"
    print(f"  [{rnd + 1}] {w.key:13} {proto}  {s.label:28} {status}", flush=True)
    return cell


def probe(s: Server, w: Workload, proto: str) -> str:
    """One more request like the failing ones, to show what the errors looked like."""
    import httpx

    body = w.post_body.read_bytes() if w.post_body else None
    try:
        with httpx.Client(http2=proto == "h2", verify=False, timeout=10) as c:
            r = c.request("POST" if body else "GET", s.endpoints.url(proto == "h2", w.path),
                          headers=dict(w.headers), content=body)
        return f"one request right after the run: {r.status_code} {r.content[:100]!r}"
    except httpx.HTTPError as e:
        return f"one request right after the run: {type(e).__name__}: {e}"


def healthy(s: Server) -> bool:
    """Does the server still answer hello.php within a few seconds (after a load ended)?"""
    import httpx

    for _ in range(3):
        try:
            if httpx.get(s.endpoints.url(False, "/hello.php"), timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: the load generator runs."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def results_markdown(meta: dict[str, Any], rows: list[report.Row],
                     ratio_rows: list[dict[str, Any]], cells: list[report.Cell],
                     soak_result: dict[str, Any] | None, labels: dict[str, str],
                     wl: dict[str, str], baseline: str) -> str:
    m, st = meta["machine"], meta["settings"]
    mib = report.MIB
    lines = [
        "<!-- written by bench/run.py; do not edit by hand -->",
        f"Measured {meta['started']} on {m['cpu']}, **{m['cores']} cores**, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}; servers and load generator on the same "
        f"machine over 127.0.0.1 (CPU pinning: {st['pin']}).",
        "",
        f"Each cell: {st['duration']:g} s, {st['rounds']} interleaved round(s) after a "
        f"{st['warmup']:g} s warm-up; HTTP/1.1: `wrk -t{st['wrk_threads']} "
        f"-c{st['connections']}` keep-alive; HTTP/2: `h2load -t1 -c{st['h2_clients']} "
        f"-m{st['h2_streams']}` over TLS (same certificate for every server). "
        + (
            "Each side as it comes: php-gateway with no sizing option (PROCESSES=auto, "
            "PHP_WORKERS=0); nginx with Debian's `worker_processes auto`, "
            "`worker_connections 768`, keep-alive defaults and access log; php-fpm with "
            "Debian's www pool (`pm = dynamic`, 5 children at most); php-fpm 8.2 with Debian's "
            "php.ini, php-fpm 8.4 with gateway/php/php.ini." if st.get("defaults") else
            f"PHP workers: {st['php_workers']} (php-gateway threads = php-fpm "
            f"`pm.max_children`, `pm = static`); php-gateway processes = nginx "
            f"`worker_processes` = {st['processes']}. Same php.ini (gateway/php/php.ini, "
            "OPcache on, JIT off) for php-gateway and php-fpm 8.4."),
        "",
        "req/s: median over rounds; p50/p99: median over rounds of each run's percentile; errors: "
        "socket errors, timeouts and non-2xx/3xx answers, summed; peak RSS: highest sum of RSS "
        "over the server's whole process tree, sampled every 100 ms (`/proc`); server CPU: "
        "user+system time of that tree per answered request.",
        "",
        report.markdown_table(rows, labels, wl, GATEWAY, baseline),
        "",
    ]
    if ratio_rows:
        lines += [
            f"php-gateway ÷ {LABELS[baseline]} (req/s: higher is better; latency and memory: "
            "lower is better):",
            "",
            "| workload | protocol | req/s | p50 | p99 | peak RSS |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for x in ratio_rows:
            lines.append(
                f"| {wl.get(x['workload'], x['workload'])} | "
                f"{report.PROTOCOL_LABEL[x['protocol']]} | {report._f(x['rps'], '.2f')} | "
                f"{report._f(x['p50'], '.2f')} | {report._f(x['p99'], '.2f')} | "
                f"{report._f(x['rss'], '.2f')} |"
            )
        lines.append("")
    shares = sorted(r.other_cpu_share for r in rows)
    if shares:
        lines += [
            f"Noise: processes other than the server and load generator kept "
            f"{100 * statistics.median(shares):.0f}% (median cell; worst "
            f"{100 * shares[-1]:.0f}%) of the machine's CPU busy during the measurements.",
            "",
        ]
    peaks: dict[str, report.Row] = {}
    for r in rows:
        if r.server not in peaks or r.peak_pss > peaks[r.server].peak_pss:
            peaks[r.server] = r
    if peaks:
        lines += [
            "Peak PSS (pages shared between processes, such as OPcache's memory, divided among "
            "them), highest over all cells, and per process at that moment (count x mean): "
            + "; ".join(f"{labels.get(k, k)} {r.peak_pss / mib:.0f} MiB ("
                        + ", ".join(f"{len(v)} x {role} {statistics.fmean(v) / mib:.0f} MiB"
                                    for role, v in sorted(r.pss_by_role.items()))
                        + ")" for k, r in peaks.items()) + ".",
            "",
        ]
    if soak_result:
        sr = soak_result
        quarters = ", ".join(f"{v / mib:.1f}" for v in sr["rss_samples"])
        lines += [
            "### Soak",
            "",
            f"{sr['requests']:,} requests against php-gateway after the run above (HTTP/1.1 "
            f"keep-alive, superglobals GET and 10 KB POST alternating, {sr['seconds']} s, "
            f"{sr['errors']} errors; statuses {sr['statuses']}): RSS of its process tree "
            f"{sr['rss_before'] / mib:.1f} MiB before, {sr['rss_after'] / mib:.1f} MiB after, "
            f"growth **{sr['growth'] / mib:+.1f} MiB**; before and after each quarter: "
            f"{quarters} MiB.",
            "",
            "```",
            *sr["commands"],
            "```",
            "",
        ]
    if meta.get("incidents"):
        lines += ["### Incidents", ""] + [f"- {x}" for x in meta["incidents"]] + [""]
    lines += ["### Versions", "", f"- load: {m['wrk']}; {m['h2load']}; Python {m['python']}"]
    for key, s in meta["servers"].items():
        if "error" in s:
            lines.append(f"- {s['label']}: **did not start**: {s['error']}")
            continue
        php = s["php"]
        tls = sorted({c.tls for c in cells if c.server == key and c.tls})
        lines.append(
            f"- {s['label']}: {s['version']}; PHP {php['php']} SAPI `{php['sapi']}` "
            f"{'ZTS' if php['zts'] else 'NTS'}, OPcache {'on' if php['opcache'] else 'OFF'}"
            + (f"; h2load negotiated {', '.join(tls)}" if tls else "")
        )
    lines += ["", "### Exact commands", "", "Servers:", "", "```"]
    for s in meta["servers"].values():
        lines += s.get("commands", [])
    lines += ["```", ""]
    for s in meta["servers"].values():
        for name, text in s.get("configs", {}).items():
            lines += [f"<details><summary>{s['label']}: {name}</summary>", "", "```nginx"
                      if name.startswith("nginx") else "```ini", text.strip(), "```", "",
                      "</details>", ""]
    lines += ["Load (round 1; every round repeats them):", "", "```"]
    seen = set()
    for c in cells:
        if c.command and c.round == 0 and c.command not in seen:
            seen.add(c.command)
            lines.append(c.command)
    lines += ["```", ""]
    failed = [c for c in cells if c.error]
    if failed:
        lines += ["### Failed cells", ""]
        lines += [f"- {labels.get(c.server, c.server)} {c.workload}/{c.protocol} round "
                  f"{c.round + 1}: {c.error}" for c in failed]
        lines.append("")
    noted = [c for c in cells if c.note and not c.error]
    if noted:
        lines += ["### Cells with errors", ""]
        lines += [f"- {labels.get(c.server, c.server)} {c.workload}/{c.protocol} round "
                  f"{c.round + 1}: {c.result.errors if c.result else '?'} errors; {c.note}"
                  for c in noted]
        lines.append("")
    return "\n".join(lines)


def update_docs(md: str, block: str = "results") -> None:
    """Replaces a generated block in docs/benchmarks.md, if its markers are there."""
    if not DOCS.exists():
        return
    text = DOCS.read_text()
    begin, end = f"<!-- bench:{block}:begin -->", f"<!-- bench:{block}:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        # Links in results are relative to bench/results/; docs/ sits one level up.
        DOCS.write_text(f"{head}{begin}\n{md}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
