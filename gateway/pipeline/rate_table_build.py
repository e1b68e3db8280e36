"""Compiles the shared rate-limit table (rate_table.c) into an API-mode cffi extension,
gateway/pipeline/_rate_table*.so. Run as `python -m gateway.pipeline.rate_table_build`
(`make bridge` does); skips the work when the sources are unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

from gateway.cffi_build import ROOT, compile_into, fingerprint, up_to_date

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "rate_table.c"
HEADER = HERE / "rate_table.h"
STAMP = HERE / ".rate-table-stamp"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def declarations() -> str:
    """rate_table.h without its preprocessor lines: what cffi's cdef accepts."""
    return "\n".join(line for line in HEADER.read_text().splitlines()
                     if not line.lstrip().startswith("#"))


def build() -> Path:
    ffi = FFI()
    ffi.cdef(declarations())
    ffi.set_source("gateway.pipeline._rate_table", '#include "rate_table.h"',
                   sources=[str(SOURCE)], include_dirs=[str(HERE)], extra_compile_args=CFLAGS)
    return compile_into(ffi, HERE, "cffi-rate-table")


def main() -> int:
    stamp = fingerprint([SOURCE, HEADER, Path(__file__)])
    if up_to_date(HERE, "_rate_table", STAMP, stamp):
        return 0
    target = build()
    STAMP.write_text(stamp)
    print(f"gateway.pipeline.rate_table_build: built {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
