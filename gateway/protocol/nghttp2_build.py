"""Compiles the nghttp2 glue (nghttp2_glue.c, Debian's libnghttp2-dev) into an API-mode cffi
extension, gateway/protocol/_nghttp2*.so. Run as `python -m gateway.protocol.nghttp2_build`
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
SOURCE = HERE / "nghttp2_glue.c"
HEADER = HERE / "nghttp2_glue.h"
STAMP = HERE / ".nghttp2-stamp"
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# nghttp2_glue.h marks the part of it that cffi reads (cffi cannot run the preprocessor)
CDEF_BEGIN = "/* ---- cffi declarations begin ---- */"
CDEF_END = "/* ---- cffi declarations end ---- */"


def declarations() -> str:
    text = HEADER.read_text()
    _, begin, rest = text.partition(CDEF_BEGIN)
    cdef, end, _ = rest.partition(CDEF_END)
    if not (begin and end):
        raise RuntimeError(f"{HEADER}: the cffi declaration markers are missing")
    return cdef


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (SOURCE, HEADER, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def built_module() -> Path | None:
    found = sorted(HERE.glob("_nghttp2*.so"))
    return found[0] if found else None


def build() -> Path:
    ffi = FFI()
    ffi.cdef(declarations())
    ffi.set_source("gateway.protocol._nghttp2", '#include "nghttp2_glue.h"',
                   sources=[str(SOURCE)], include_dirs=[str(HERE)], libraries=["nghttp2"],
                   extra_compile_args=CFLAGS)
    tmp = ROOT / "build" / "cffi-nghttp2"
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
    try:
        target = build()
    except Exception:  # cffi's compile error names the missing header, not the package
        print("gateway.protocol.nghttp2_build: the build failed; it needs libnghttp2-dev "
              "(scripts/install-system-deps.sh build installs it)", file=sys.stderr)
        raise
    STAMP.write_text(stamp)
    print(f"gateway.protocol.nghttp2_build: built {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
