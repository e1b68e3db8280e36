"""How many CPUs this process may really use: what PROCESSES and PHP_WORKERS default to.

os.cpu_count() counts the host's CPUs. A container limited with `--cpus 2` (a cgroup v2
cpu.max quota) or pinned with `--cpuset-cpus` may use fewer; nginx's `worker_processes
auto` reads the affinity mask, and the quota matters as much, so both are read here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def available_cpus(cpu_max: Path = CPU_MAX) -> int:
    """CPUs in the affinity mask, capped by the cgroup's CPU quota (rounded up); at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 file (or not readable): no quota to honour
    return max(1, count)
