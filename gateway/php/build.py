"""Compiles the bridge (bridge/ + ext/) against the cached ZTS libphp into an API-mode cffi
extension, gateway/php/_phpbridge*.so. Run as `python -m gateway.php.build`; PHP_PREFIX
names the libphp install (scripts/build-php.sh prints it). Skips the work when the sources
and the prefix are unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cffi import FFI

from gateway.cffi_build import ROOT, compile_into, fingerprint, marked_declarations, up_to_date

HERE = Path(__file__).resolve().parent
SOURCES = [ROOT / "bridge" / "pool.c", ROOT / "bridge" / "sapi.c", ROOT / "ext" / "gateway_ext.c",
           ROOT / "ext" / "worker.c"]
BRIDGE_H = ROOT / "bridge" / "bridge.h"
STAMP = HERE / ".bridge-stamp"
CFLAGS = ["-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wno-unused-parameter"]


def bridge_cdef() -> str:
    """The declarations Python sees: the lines of bridge.h between its cffi markers."""
    return marked_declarations(BRIDGE_H)


def php_config(prefix: Path, flag: str) -> str:
    out = subprocess.run(
        [str(prefix / "bin" / "php-config"), flag], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def sources_fingerprint(prefix: Path) -> str:
    inputs = sorted([*ROOT.glob("bridge/*.[ch]"), *ROOT.glob("ext/*.[ch]")])
    return fingerprint([*inputs, Path(__file__)], seed=str(prefix).encode())


def build(prefix: Path) -> Path:
    includes = [flag[2:] for flag in php_config(prefix, "--includes").split()]
    ffi = FFI()
    ffi.cdef(bridge_cdef())
    ffi.set_source(
        "gateway.php._phpbridge",
        '#include "bridge.h"',
        sources=[str(p) for p in SOURCES],
        include_dirs=[str(ROOT / "bridge"), *includes],
        define_macros=[("ZTS", "1"), ("ZEND_ENABLE_STATIC_TSRMLS_CACHE", "1")],
        libraries=["php"],
        library_dirs=[str(prefix / "lib")],
        runtime_library_dirs=[str(prefix / "lib")],
        extra_compile_args=CFLAGS,
    )
    target = compile_into(ffi, HERE, "cffi")
    for old in HERE.glob("_phpbridge*.so"):
        if old != target:
            old.unlink()
    return target


def write_buildinfo(prefix: Path) -> None:
    ext_dir = php_config(prefix, "--extension-dir")
    version = php_config(prefix, "--version")
    (HERE / "_buildinfo.py").write_text(
        '"""Written by gateway/php/build.py: where the bridge\'s libphp lives."""\n\n'
        f"PHP_PREFIX = {str(prefix)!r}\n"
        f"PHP_EXTENSION_DIR = {ext_dir!r}\n"
        f"PHP_VERSION = {version!r}\n"
    )


def main() -> int:
    raw = os.environ.get("PHP_PREFIX", "").strip()
    if not raw:
        print("gateway.php.build: set PHP_PREFIX (scripts/build-php.sh prints it)", file=sys.stderr)
        return 2
    prefix = Path(raw)
    if not (prefix / "lib" / "libphp.so").exists():
        print(f"gateway.php.build: no libphp.so under {prefix}/lib", file=sys.stderr)
        return 2
    stamp = sources_fingerprint(prefix)
    if up_to_date(HERE, "_phpbridge", STAMP, stamp):
        return 0
    target = build(prefix)
    write_buildinfo(prefix)
    STAMP.write_text(stamp)
    print(f"gateway.php.build: built {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
