"""The compiled cffi bridge (built by `python -m gateway.php.build`, i.e. `make bridge`)."""

from __future__ import annotations

import ctypes
import os
from typing import Any

try:
    from gateway.php import _buildinfo

    # OPcache is a shared extension that needs libphp's symbols: load libphp globally
    # before the bridge module (Python's dlopen default is RTLD_LOCAL).
    ctypes.CDLL(os.path.join(_buildinfo.PHP_PREFIX, "lib", "libphp.so"), mode=ctypes.RTLD_GLOBAL)

    from gateway.php._phpbridge import ffi as _ffi
    from gateway.php._phpbridge import lib as _lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the PHP bridge is not compiled: run `make bridge` (it builds libphp if needed)"
    ) from exc

ffi: Any = _ffi
lib: Any = _lib


def php_version() -> str:
    return str(ffi.string(lib.pg_php_version()).decode())
