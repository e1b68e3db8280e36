"""Whether a process still exists, for state other processes left behind (metrics
snapshots, accept-balancing counts) when they could not clean up after themselves."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence and permission checks only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but it exists
    return True
