"""Compiles the nghttp2 glue (nghttp2_glue.c, Debian's libnghttp2-dev) into an API-mode cffi
extension, gateway/protocol/_nghttp2*.so. Run as `python -m gateway.protocol.nghttp2_build`
(`make bridge` does); skips the work when the sources are unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

from gateway.cffi_build import ROOT, compile_into, fingerprint, marked_declarations, up_to_date

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "nghttp2_glue.c"
HEADER = HERE / "nghttp2_glue.h"
STAMP = HERE / ".nghttp2-stamp"
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def build() -> Path:
    ffi = FFI()
    ffi.cdef(marked_declarations(HEADER))
    ffi.set_source("gateway.protocol._nghttp2", '#include "nghttp2_glue.h"',
                   sources=[str(SOURCE)], include_dirs=[str(HERE)], libraries=["nghttp2"],
                   extra_compile_args=CFLAGS)
    return compile_into(ffi, HERE, "cffi-nghttp2")


def main() -> int:
    stamp = fingerprint([SOURCE, HEADER, Path(__file__)])
    if up_to_date(HERE, "_nghttp2", STAMP, stamp):
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
