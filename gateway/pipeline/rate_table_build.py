"""Compiles the shared rate-limit table (rate_table.c) into an API-mode cffi extension,
gateway/pipeline/_rate_table*.so. Run as `python -m gateway.pipeline.rate_table_build`
(`make bridge` does); skips the work when the sources are unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = HERE / "rate_table.c"
HEADER = HERE / "rate_table.h"
STAMP = HERE / ".rate-table-stamp"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def declarations() -> str:
    """rate_table.h without its preprocessor lines: what cffi's cdef accepts."""
    return "\n".join(line for line in HEADER.read_text().splitlines()
                     if not line.lstrip().startswith("#"))


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (SOURCE, HEADER, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def built_module() -> Path | None:
    found = sorted(HERE.glob("_rate_table*.so"))
    return found[0] if found else None


def build() -> Path:
    ffi = FFI()
    ffi.cdef(declarations())
    ffi.set_source("gateway.pipeline._rate_table", '#include "rate_table.h"',
                   sources=[str(SOURCE)], include_dirs=[str(HERE)], extra_compile_args=CFLAGS)
    tmp = ROOT / "build" / "cffi-rate-table"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        so = Path(ffi.compile(tmpdir=str(tmp), verbose=False))
    finally:
        os.chdir(cwd)
    target = HERE / so.name
    # a new inode renamed into place: running workers keep their mapping of the old file
    staging = target.with_suffix(".so.new")
    shutil.copy2(so, staging)
    os.replace(staging, target)
    return target


def main() -> int:
    stamp = fingerprint()
    if built_module() and STAMP.exists() and STAMP.read_text() == stamp:
        return 0
    target = build()
    STAMP.write_text(stamp)
    print(f"gateway.pipeline.rate_table_build: built {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
