"""Profiles php-gateway under one benchmark load: py-spy on its worker processes (the Python
side) and `perf record` on the same processes (the bridge, libphp, the kernel).

    .venv/bin/python -m bench.profile --workload hello --protocol h1 [--seconds 15]

Prints where the workers' time goes and keeps the raw profiles in the run directory.
See docs/benchmarks.md for what the profiles of the published run showed.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs
from bench.servers import REPO, Endpoints, Gateway, free_port
from bench.workloads import LoadSettings, h2load_argv, prepare_docroot, workloads, wrk_argv


def top_frames(raw_files: list[Path], n: int) -> str:
    """Self and inclusive shares of Python functions from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for path in raw_files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            total += int(count)
            own[frames[-1]] += int(count)  # leaf with its line: where exactly
            for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
                incl[f] += int(count)
    if not total:
        return "py-spy: no samples\n"
    out = [f"py-spy: {total} samples; self (leaf frame and line):"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    out.append("inclusive:")
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(n + 10)
            if "runpy" not in f and "worker.py" not in f]
    return "\n".join(out) + "\n"


def perf_report(data: Path, sort: str, n: int) -> str:
    r = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort,
                        "--stdio", "-g", "none"], capture_output=True, text=True)
    rows = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return f"perf, by {sort}:\n" + "\n".join(rows[:n]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="hello",
                   choices=("hello", "superglobals", "static", "big", "post"))
    p.add_argument("--protocol", default="h1", choices=("h1", "h2"))
    p.add_argument("--seconds", type=int, default=15, help="profiled span (load runs longer)")
    p.add_argument("--php-workers", type=int, default=2 * (os.cpu_count() or 1))
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args(argv)

    run = Path(tempfile.mkdtemp(prefix="php-gateway-profile-"))
    docroot = prepare_docroot(run)
    from bench.run import make_certs

    _, cert, key = make_certs(run)
    w = next(x for x in workloads(run) if x.key == a.workload)
    gw = Gateway("gateway", "php-gateway", Endpoints(free_port(), free_port()), run, [],
                 docroot=docroot, php_workers=a.php_workers, processes=a.processes,
                 cert=cert, key_file=key)
    gw.start()
    try:
        workers = sorted(procs.process_tree(gw.root_pids()) - set(gw.root_pids()))
        settings = LoadSettings(a.seconds + 6, 1, 50, 10, 10)
        url = gw.endpoints.url(a.protocol == "h2", w.path)
        load = (wrk_argv(w, url, settings, settings.duration_s, run) if a.protocol == "h1"
                else h2load_argv(w, url, settings, settings.duration_s, run / "h2.log"))
        print(f"profile: {' '.join(load)}\nprofile: workers {workers}", flush=True)
        loader = subprocess.Popen(load, stdout=subprocess.PIPE, text=True)
        time.sleep(3)  # past connection set-up and warm-up
        spies = [subprocess.Popen(
            [str(REPO / ".venv/bin/py-spy"), "record", "--pid", str(pid), "--rate", "200",
             "--duration", str(a.seconds), "--format", "raw", "--nonblocking",
             "--output", str(run / f"py-spy-{pid}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in workers]
        perf_data = run / "perf.data"
        perf = None
        if shutil.which("perf"):
            # cpu-clock: this VM has no hardware counters; -g for call chains into libphp
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-o", str(perf_data),
                 "-p", ",".join(map(str, workers)), "--", "sleep", str(a.seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for s in spies:
            s.wait()
        if perf is not None:
            perf.wait()
        out, _ = loader.communicate(timeout=60)
    finally:
        gw.stop()
    summary = [f"# {a.workload} over {a.protocol}, {a.processes} processes, {a.php_workers} "
               f"PHP threads\n", out, top_frames(sorted(run.glob("py-spy-*.txt")), a.top)]
    if perf_data.exists():
        summary += [perf_report(perf_data, "comm,dso", 15), perf_report(perf_data, "dso,sym",
                                                                         a.top)]
    text = "\n".join(summary)
    (run / "summary.txt").write_text(text)
    print(text)
    print(f"profile: raw profiles and summary in {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
