"""Process-tree memory sampling from /proc, and starting/stopping the servers under test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # comm (field 2) may hold spaces and parentheses: fields resume after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(roots: Iterable[int]) -> set[int]:
    """The roots and every live descendant (nginx workers, fpm children, gateway workers)."""
    parents = _parent_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree: set[int] = set()
    todo = [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process; 0 once it has exited."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (OPcache SHM, libphp text) split between sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def role(pid: int) -> str:
    """What a process of a server tree is, for memory per process: php-fpm and nginx name
    themselves ("php-fpm: pool bench", "nginx: worker process"); ours by module."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    title = argv[0].decode(errors="replace")
    words = title.split()
    if words and words[0] in ("php-fpm:", "nginx:"):  # "php-fpm: pool www", "nginx: master ..."
        return " ".join(words[:2] if words[1] == "pool" else words[:3])
    if b"gateway.worker" in argv:
        return "php-gateway worker"
    if any(a.endswith(b"php-gateway") for a in argv[:2]):
        return "php-gateway supervisor"
    return Path(title).name


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far; 0 once it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (/proc/stat), in seconds."""
    cols = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy
    return (sum(cols[:8]) - cols[3] - cols[4]) / _TICK


def tree_rss(roots: Iterable[int]) -> int:
    return sum(rss_bytes(p) for p in process_tree(roots))


class MemorySampler:
    """Samples the summed RSS (every `interval`) and PSS (every 5th sample) of a process tree.

    The tree is re-walked once a second, not every sample: walking /proc costs the 2-core
    machine more CPU than reading a few statm files, and worker sets are static anyway.
    """

    def __init__(self, roots: Sequence[int], interval: float = 0.1) -> None:
        self._roots = list(roots)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_rss = 0
        self.peak_pss = 0
        self.pss_by_role: dict[str, list[int]] = {}  # at the peak: each process's PSS
        self.samples = 0
        self.server_cpu = 0.0  # CPU seconds the tree used inside the `with` block
        self.machine_cpu = 0.0  # busy CPU seconds of the whole machine, same span

    def __enter__(self) -> MemorySampler:
        self._cpu0 = self._tree_cpu()
        self._busy0 = machine_busy_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.server_cpu = self._tree_cpu() - self._cpu0
        self.machine_cpu = machine_busy_seconds() - self._busy0

    def _tree_cpu(self) -> float:
        return sum(cpu_seconds(p) for p in process_tree(self._roots))

    def _run(self) -> None:
        pids: set[int] = set()
        refreshed = 0.0
        n = 0
        while True:
            now = time.monotonic()
            if now - refreshed >= 1.0:
                pids = process_tree(self._roots)
                refreshed = now
            self.peak_rss = max(self.peak_rss, sum(rss_bytes(p) for p in pids))
            if n % 5 == 0:
                each = {p: pss_bytes(p) for p in pids}
                if sum(each.values()) > self.peak_pss:
                    self.peak_pss = sum(each.values())
                    by_role: dict[str, list[int]] = {}
                    for p, v in each.items():
                        by_role.setdefault(role(p), []).append(v)
                    self.pss_by_role = by_role
            n += 1
            self.samples = n
            if self._stop.wait(self._interval):
                return


def start(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts a server in the foreground mode, its output appended to `log`."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    finally:
        out.close()  # the child holds its own copy


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signals the master and waits; anything of its tree still alive after that is killed.

    Only processes this benchmark started (the master and its descendants) are touched.
    """
    tree = process_tree([proc.pid])
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = process_tree(tree - {proc.pid})
        if not left:
            return
        time.sleep(0.1)
    for pid in process_tree(tree - {proc.pid}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
