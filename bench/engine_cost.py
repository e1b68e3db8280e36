"""The PHP engine's cost in php-gateway (ZTS libphp.so on threads) against php-fpm (NTS
children), on pages where PHP's own work dominates: req/s over a fixed number of requests, and
CPU time per request of the PHP side alone, read per thread from /proc (schedstat) — the PHP
threads of php-gateway's workers, the pool children of php-fpm. This machine has no hardware
counters (`perf stat -e instructions` says "not supported"), so CPU time is what is counted.

    python -m bench.engine_cost                               # bootstrap, compute, hello
    python -m bench.engine_cost --tree ../candidate --requests 4000
    python -m bench.engine_cost --callgrind 100           # instructions per request

Every --tree adds a php-gateway row that runs another checkout whose bridge was built against
another libphp (a candidate build measured beside the current one and php-fpm in one run,
rounds interleaved); the bridge loads libphp.so by the absolute path it was built with.
See docs/benchmarks.md, "The PHP engine: ZTS against php-fpm".
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import procs
from bench.parsers import parse_h2load
from bench.run import fpm84_prefix, make_certs
from bench.servers import REPO, Endpoints, Gateway, NginxFpm, Server, free_port, wait_listening
from bench.symfony import ROUTE, prepare_app
from bench.workloads import LoadSettings, Workload, h2load_argv, prepare_docroot, workloads


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """On-CPU nanoseconds of each thread of one process (first field of schedstat)."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


def php_prefix(tree: Path) -> Path:
    """The libphp install a checkout's bridge was built against (its _buildinfo.py)."""
    text = (tree / "gateway" / "php" / "_buildinfo.py").read_text()
    m = re.search(r"^PHP_PREFIX = '([^']*)'", text, re.M)
    if m is None:
        raise SystemExit(f"{tree}: the bridge is not built (no PHP_PREFIX in _buildinfo.py)")
    return Path(m.group(1))


def ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[1])


def php_pids(server: Server) -> list[int]:
    """The PHP side: the first process's children — php-fpm's pool children under its master,
    php-gateway's worker processes under its supervisor (also when valgrind runs them)."""
    root = server.procs_[0].pid
    return sorted(p for p in procs.process_tree([root]) if ppid(p) == root)


def cpu_split(server: Server) -> tuple[int, int]:
    """(PHP side, everything else) CPU ns of the server's tree so far. PHP side: php-fpm's pool
    children; php-gateway's worker threads other than each process's main thread (the event
    loop), i.e. the PHP threads the bridge starts."""
    php_side = set(php_pids(server))
    php = other = 0
    for pid in procs.process_tree(server.root_pids()):
        for tid, ns in thread_cpu_ns(pid).items():
            if pid in php_side and not (isinstance(server, Gateway) and tid == pid):
                php += ns
            else:
                other += ns
    return php, other


def run_once(server: Server, url: str, argv: list[str],
             perf_out: Path | None = None) -> tuple[float, float, float, int]:
    """req/s, PHP-side and other CPU ms per request, failed requests. With perf_out, the PHP
    side is sampled by `perf record -g` (software clock: no hardware counters here)."""
    perf = None
    if perf_out is not None:
        pids = ",".join(map(str, php_pids(server)))
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g",
                                 "-p", pids, "-o", str(perf_out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    php0, other0 = cpu_split(server)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    php1, other1 = cpu_split(server)
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    s = parse_h2load(out.stdout)
    n = max(1, s.succeeded)
    return s.rps, (php1 - php0) / n / 1e6, (other1 - other0) / n / 1e6, s.failed


def _callgrind_total(files: list[Path]) -> int:
    total = 0
    for f in files:
        m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total


def callgrind_instructions(server: Server, w: Workload, requests: int, outdir: Path,
                           run: Path, loop: bool = False) -> float:
    """Instructions per request of the PHP side, counted by callgrind: counters zeroed after a
    warm-up, `requests` answered, counters dumped; php-fpm's child, or the PHP threads (not
    the event-loop thread) of php-gateway's worker process; loop: its event-loop thread
    instead (the front end's own cost, for A/B of its stages with --gateway-variant)."""
    settings = LoadSettings(0, 1, 1, 1, 1)
    url = server.endpoints.url(False, w.path)
    warm = h2load_argv(w, url, settings, 0, run / "x", h1=True, requests=20, clients=1)
    subprocess.run(warm, capture_output=True, timeout=1800, check=True)
    pids = php_pids(server)  # after the warm-up: a worker under valgrind starts late
    if not pids:
        raise RuntimeError(f"{server.label}: no PHP process found")
    for pid in pids:
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
    load = h2load_argv(w, url, settings, 0, run / "x", h1=True, requests=requests, clients=1)
    out = subprocess.run(load, capture_output=True, text=True, timeout=3600, check=True)
    if parse_h2load(out.stdout).succeeded != requests:
        raise RuntimeError(f"{server.label}: not every request succeeded:\n{out.stdout}")
    total = 0
    for pid in pids:
        before = set(outdir.glob(f"cg.{pid}.*"))
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
        dumped: list[Path] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the dump is written asynchronously
            now = sorted(set(outdir.glob(f"cg.{pid}.*")) - before)
            if now and now == dumped and _callgrind_total(now) > 0:
                break
            dumped = now
            time.sleep(1)
        if isinstance(server, Gateway):  # thread 1 is the event loop
            dumped = [f for f in dumped if f.name.endswith("-01") == loop]
        total += _callgrind_total(dumped)
    return total / requests


def callgrind_main(a: argparse.Namespace, variants: list[tuple[str, list[str], list[str]]],
                   fpm: Path, fpm_ini: list[str], gw_args: list[str], chosen: list[Workload],
                   run: Path, docroot: Path, cert: Path, key: Path) -> int:
    """--callgrind N: each server alone, one PHP worker, under valgrind's callgrind."""
    outdir = run / "callgrind"
    outdir.mkdir()
    vg = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--separate-threads=yes",
          "--compress-strings=no", "--compress-pos=no",
          f"--callgrind-out-file={outdir}/cg.%p"]
    servers: list[Server] = [
        NginxFpm("fpm84", "nginx + php-fpm 8.4", Endpoints(free_port(), free_port()), run, [],
                 fpm_binary=fpm / "sbin" / "php-fpm", fpm_ini_args=fpm_ini, docroot=docroot,
                 front_controller="index.php" if a.symfony else "",
                 php_workers=1, nginx_workers=1, cert=cert, key_file=key)]
    # valgrind 3.19 lacks pidfd_open: the supervisor takes its fallback (polling its workers)
    site = run / "callgrind-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.__dict__.pop('pidfd_open', None)\n")
    for i, (label, prefix_argv, extra) in enumerate(variants):
        tree = prefix_argv[-1].removeprefix("PYTHONPATH=")
        env = [*prefix_argv[:-1], f"PYTHONPATH={site}{os.pathsep}{tree}"]
        servers.append(SlowGateway(f"gateway{i}", label, Endpoints(free_port(), free_port()),
                                   run, [*env, *vg], docroot=docroot,
                                   php_workers=1, processes=1, cert=cert, key_file=key,
                                   extra_args=[*extra, *gw_args]))
    rows: list[tuple[str, str, float]] = []
    for s in servers:
        if isinstance(s, NginxFpm):  # only php-fpm under valgrind, not nginx
            wrapper = run / "callgrind-php-fpm"
            wrapper.write_text(f"#!/bin/sh\nexec {shlex.join(vg)} {s.fpm_binary} \"$@\"\n")
            wrapper.chmod(0o755)
            s.fpm_binary = wrapper
        s.start()
        try:
            for w in chosen:
                n = callgrind_instructions(s, w, a.callgrind, outdir, run,
                                           loop=a.loop and isinstance(s, Gateway))
                rows.append((w.key, s.label, n))
                print(f"  {w.key:10} {s.label:45} {n:15,.0f} instructions/request", flush=True)
        finally:
            s.stop()
    print(f"\ninstructions per request of the PHP side (callgrind, {a.callgrind} requests "
          "after 20 unmeasured)")
    for w in chosen:
        base = next(n for k, label, n in rows if k == w.key and label.startswith("nginx"))
        for k, label, n in rows:
            if k == w.key:
                # a static file runs no PHP in php-fpm: nothing to divide by
                ratio = f"{n / base:6.3f}" if base else "     -"
                print(f"{k:10} {label:45} {n:15,.0f} {ratio}")
    return 0


class SlowGateway(Gateway):
    """php-gateway under valgrind: minutes, not seconds, before it listens."""

    def start(self) -> None:
        d = self.rundir / self.key
        (d / "logs").mkdir(parents=True, exist_ok=True)
        argv = [*self.cpu_prefix, str(REPO / ".venv" / "bin" / "php-gateway"),
                "--document-root", str(self.docroot),
                "--listen-addr", f"127.0.0.1:{self.endpoints.http_port}",
                "--php-workers", str(self.php_workers), "--processes", str(self.processes),
                *self.extra_args]
        self.commands = [shlex.join(argv)]
        self.procs_.append(procs.start(argv, d / "logs" / "stdout.log"))
        wait_listening(self.endpoints.http_port, 600, self.procs_[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="bootstrap,compute,hello")
    p.add_argument("--requests", type=int, default=3000, help="h2load -n per measurement")
    p.add_argument("--clients", type=int, default=16, help="h2load -c (HTTP/1.1 keep-alive)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--php-workers", type=int, default=4,
                   help="PHP threads in php-gateway = php-fpm pm.max_children")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="php-gateway processes = nginx worker_processes")
    p.add_argument("--tree", action="append", default=[], type=Path,
                   help="another checkout whose bridge was built against another libphp "
                   "(PHP_PREFIX=... python -m gateway.php.build there): one more php-gateway "
                   "row, run by this checkout's interpreter (repeatable)")
    p.add_argument("--no-current", action="store_true", help="leave out this checkout")
    p.add_argument("--fpm-prefix", default=os.environ.get("PHP_FPM_PREFIX"))
    p.add_argument("--php-ini-set", action="append", default=[],
                   help="key=value for both servers' PHP (e.g. opcache.jit=tracing)")
    p.add_argument("--callgrind", type=int, metavar="N",
                   help="instead: instructions per request under callgrind over N requests, "
                   "one PHP worker per server, servers one after another")
    p.add_argument("--symfony", action="store_true",
                   help="instead of --workloads: bench/symfony's route (Symfony 5.4, classic mode)")
    p.add_argument("--gateway-variant", action="append", default=[], metavar="OPTIONS",
                   help="one more php-gateway row of this checkout with these options, e.g. "
                   "'--compression off' (repeatable)")
    p.add_argument("--loop", action="store_true",
                   help="with --callgrind: count php-gateway's event-loop thread, not its PHP "
                   "threads")
    p.add_argument("--perf-dir", type=Path,
                   help="record round 1 with perf record -g into this directory")
    a = p.parse_args(argv)

    run = Path(tempfile.mkdtemp(prefix="php-gateway-engine-"))
    gw_args = [x for kv in a.php_ini_set for x in ("--php-ini-set", kv)]
    _, cert, key = make_certs(run)
    if a.symfony:  # bench/symfony's route; every other path goes to its front controller
        docroot = prepare_app(run)
        chosen = [Workload("symfony", "Symfony 5.4 route", ROUTE,
                           check=lambda body: b'<li><a href="/product/' in body)]
    else:
        docroot = prepare_docroot(run)
        ws = {w.key: w for w in workloads(run)}
        chosen = [ws[k] for k in a.workloads.split(",")]
    front = "index.php" if a.symfony else ""
    gw_args += ["--index-file", front] if front else []
    settings = LoadSettings(0, 1, a.clients, a.clients, 1)

    servers: list[Server] = []
    fpm = fpm84_prefix(a.fpm_prefix)
    ext_dir = subprocess.run([str(fpm / "bin" / "php-config"), "--extension-dir"],
                             capture_output=True, text=True, check=True).stdout.strip()
    fpm_ini = ["-d", f"extension_dir={ext_dir}", "-d", "zend_extension=opcache"]
    fpm_ini += [x for kv in a.php_ini_set for x in ("-d", kv)]
    servers.append(NginxFpm("fpm84", "nginx + php-fpm 8.4", Endpoints(free_port(), free_port()),
                            run, [], fpm_binary=fpm / "sbin" / "php-fpm", fpm_ini_args=fpm_ini,
                            docroot=docroot, php_workers=a.php_workers, front_controller=front,
                            nginx_workers=a.processes, cert=cert, key_file=key))
    trees = ([] if a.no_current else [REPO]) + [t.resolve() for t in a.tree]
    # cwd = the tree too: `python -m gateway.worker` puts the cwd before PYTHONPATH
    variants = [(f"php-gateway on {php_prefix(t).name}",
                 ["env", "-C", str(t), f"PYTHONPATH={t}"], []) for t in trees]
    variants += [(f"php-gateway {options}", ["env", "-C", str(REPO), f"PYTHONPATH={REPO}"],
                  shlex.split(options)) for options in a.gateway_variant]
    for i, (label, prefix_argv, extra) in enumerate(variants):
        servers.append(Gateway(f"gateway{i}", label, Endpoints(free_port(), free_port()), run,
                               prefix_argv, docroot=docroot, php_workers=a.php_workers,
                               processes=a.processes, cert=cert, key_file=key,
                               extra_args=[*extra, *gw_args]))

    if a.callgrind:
        return callgrind_main(a, variants, fpm, fpm_ini, gw_args, chosen, run, docroot, cert,
                              key)
    results: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    commands: list[str] = []
    try:
        for s in servers:
            s.start()
            commands += s.commands
        for w in chosen:
            for s in servers:  # an answer checked, then an unmeasured warm-up
                body = httpx.get(s.endpoints.url(False, w.path), timeout=30).content
                if not w.check(body):
                    raise SystemExit(f"{s.label} answers {w.key} wrongly: {body[:200]!r}")
                warm = h2load_argv(w, s.endpoints.url(False, w.path), settings, 0, run / "x",
                                   h1=True, requests=max(200, a.requests // 10))
                subprocess.run(warm, capture_output=True, timeout=900)
        for rnd in range(a.rounds):
            for w in chosen:
                order = servers[rnd % len(servers):] + servers[: rnd % len(servers)]
                for s in order:
                    url = s.endpoints.url(False, w.path)
                    argv = h2load_argv(w, url, settings, 0, run / "x", h1=True,
                                       requests=a.requests)
                    if rnd == 0:
                        commands.append(shlex.join(argv))
                    perf_out = None
                    if a.perf_dir is not None and rnd == 0:
                        a.perf_dir.mkdir(parents=True, exist_ok=True)
                        perf_out = a.perf_dir / f"{s.key}-{w.key}.data"
                    r = run_once(s, url, argv, perf_out)
                    results.setdefault((s.key, w.key), []).append(r)
                    print(f"  [{rnd + 1}] {w.key:10} {s.label:45} {r[0]:8,.0f} req/s  PHP "
                          f"{r[1]:6.3f} ms/req  rest {r[2]:6.3f} ms/req  failed {r[3]}",
                          flush=True)
    finally:
        for s in servers:
            s.stop()

    print("\nmedians over rounds; ratios against nginx + php-fpm 8.4 in the same run")
    print(f"{'workload':10} {'server':45} {'req/s':>8} {'/fpm':>5} {'PHP ms/req':>10} "
          f"{'/fpm':>5} {'rest ms/req':>11}")
    for w in chosen:
        base = results[("fpm84", w.key)]
        b_rps = statistics.median(r[0] for r in base)
        b_php = statistics.median(r[1] for r in base)
        for s in servers:
            rs = results[(s.key, w.key)]
            rps = statistics.median(r[0] for r in rs)
            php = statistics.median(r[1] for r in rs)
            rest = statistics.median(r[2] for r in rs)
            print(f"{w.key:10} {s.label:45} {rps:8,.0f} {rps / b_rps:5.2f} {php:10.3f} "
                  f"{php / b_php:5.2f} {rest:11.3f}")
    print("\ncommands:")
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
