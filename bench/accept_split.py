"""How php-gateway's worker processes share keep-alive connections, and what the split does
to latency: runs wrk (`-t1 -c50`) and h2load (`-t1 -c10 -m10`, TLS) against two checkouts
side by side, alternating, on the benchmark's PHP pages; halfway through each run it counts
every worker's established connections (`ss -tnp`), and it records p99, req/s and the CPU
the rest of the machine used meanwhile (noise). Pairs are printed as they come, then the
median and geometric mean of new ÷ base per row.

    python -m bench.accept_split --base ../old-checkout            # this checkout is "new"
    python -m bench.accept_split --base ../old --new ../other --runs 8 --pages compute.php

A checkout is run with this checkout's interpreter (its gateway package on PYTHONPATH and
as the working directory, so the workers import it too); it needs its compiled bridge.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.parsers import h2load_result, parse_wrk
from bench.servers import free_port
from bench.workloads import prepare_docroot

REPO = Path(__file__).resolve().parents[1]


def busy_jiffies() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def tree_jiffies(pid: int) -> int:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    total = 0
    for p in [pid, *map(int, out.split())]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])  # utime + stime (threads included)
    return total


def split(port: int) -> list[int]:
    """Established connections on `port`, per process, smallest first."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values())


class Checkout:
    def __init__(self, name: str, tree: Path, run: Path, processes: int, php_workers: int):
        self.name = name
        self.port, self.tls_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "php-gateway"), "--document-root", str(run / "www"),
             "--listen-addr", f"127.0.0.1:{self.port}",
             "--tls-listen-addr", f"127.0.0.1:{self.tls_port}",
             "--tls-cert", str(run / "cert.pem"), "--tls-key", str(run / "key.pem"),
             "--php-workers", str(php_workers), "--processes", str(processes)],
            cwd=tree, env=env, stdout=(run / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def one(c: Checkout, proto: str, page: str, secs: int, run: Path) -> dict[str, Any]:
    if proto == "h1":
        port = c.port
        argv = ["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", f"http://127.0.0.1:{port}/{page}"]
    else:
        port = c.tls_port
        argv = ["h2load", "-t1", "-c10", "-m10", "-D", str(secs), f"--log-file={run / 'h2.log'}",
                f"https://127.0.0.1:{port}/{page}"]
    busy0, own0 = busy_jiffies(), tree_jiffies(c.proc.pid)
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(secs / 2)
    shares = split(port)
    out, _ = load.communicate()
    # the load generator's CPU is in here too: about the same for both checkouts
    noise = busy_jiffies() - busy0 - (tree_jiffies(c.proc.pid) - own0)
    if proto == "h1":
        result = parse_wrk(out)
    else:
        with (run / "h2.log").open() as f:
            result = h2load_result(out, f)
    return {"checkout": c.name, "proto": proto, "page": page, "split": shares,
            "p99_ms": result.p99_ms, "p50_ms": result.p50_ms, "rps": round(result.rps),
            "noise_jiffies": noise}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.accept_split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="checkout to compare against")
    p.add_argument("--new", type=Path, default=REPO, help="checkout under test (this one)")
    p.add_argument("--runs", type=int, default=5, help="pairs per (page, protocol)")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--pages", default="compute.php,bootstrap.php")
    p.add_argument("--protocols", default="h1,h2")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--php-workers", type=int, default=4)
    p.add_argument("--json", type=Path, help="write every run here")
    a = p.parse_args(argv)
    import trustme

    run = Path(tempfile.mkdtemp(prefix="php-gateway-split-"))
    prepare_docroot(run)
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(run / "key.pem"))
    (run / "cert.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    checkouts = [Checkout(name, tree.resolve(), run, a.processes, a.php_workers)
                 for name, tree in (("new", a.new), ("base", a.base))]
    pages, protos = a.pages.split(","), a.protocols.split(",")
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(8)  # PHP starts in every worker
        for page in pages:  # warm-up: OPcache, the bootstrap page's classes
            for proto in protos:
                for c in checkouts:
                    one(c, proto, page, 1, run)
        for i in range(a.runs):
            for page in pages:
                for proto in protos:
                    for c in checkouts if i % 2 == 0 else checkouts[::-1]:
                        rows.append(one(c, proto, page, a.seconds, run))
                        print(json.dumps(rows[-1]), flush=True)
    finally:
        for c in checkouts:
            c.stop()
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1))
    print()
    for page in pages:
        for proto in protos:
            new, base = ([r for r in rows if (r["page"], r["proto"], r["checkout"])
                          == (page, proto, name)] for name in ("new", "base"))
            ratios = [n["p99_ms"] / b["p99_ms"] for n, b in zip(new, base, strict=True)]
            rps = [n["rps"] / b["rps"] for n, b in zip(new, base, strict=True)]
            print(f"{page:14} {proto}  p99 new÷base median {statistics.median(ratios):.2f} "
                  f"geomean {statistics.geometric_mean(ratios):.2f}  req/s new÷base median "
                  f"{statistics.median(rps):.2f}  splits base {[tuple(b['split']) for b in base]}"
                  f" new {[tuple(n['split']) for n in new]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
