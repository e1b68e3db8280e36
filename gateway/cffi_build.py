"""What the three cffi builds share (gateway/php/build.py, gateway/pipeline/rate_table_build.py,
gateway/protocol/nghttp2_build.py): the declarations between a header's markers, the
fingerprint that lets `make bridge` skip an unchanged build, and the compile itself."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[1]
# a header marks the part of it that cffi reads (cffi cannot run the preprocessor)
CDEF_BEGIN = "/* ---- cffi declarations begin ---- */"
CDEF_END = "/* ---- cffi declarations end ---- */"


def marked_declarations(header: Path) -> str:
    """The lines of `header` between its cffi markers."""
    text = header.read_text()
    _, begin, rest = text.partition(CDEF_BEGIN)
    cdef, end, _ = rest.partition(CDEF_END)
    if not (begin and end):
        raise RuntimeError(f"{header}: the cffi declaration markers are missing")
    return cdef


def fingerprint(inputs: Iterable[Path], seed: bytes = b"") -> str:
    """A digest of `seed`, the inputs and this file (every build's compile step)."""
    digest = hashlib.sha256(seed)
    for path in [*inputs, Path(__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def built_module(folder: Path, stem: str) -> Path | None:
    found = sorted(folder.glob(f"{stem}*.so"))
    return found[0] if found else None


def up_to_date(folder: Path, stem: str, stamp: Path, digest: str) -> bool:
    """The module is built and the stamp says from these inputs."""
    return built_module(folder, stem) is not None and stamp.exists() and (
        stamp.read_text() == digest
    )


def compile_into(ffi: FFI, folder: Path, tmpdir: str) -> Path:
    """Compile `ffi` (its set_source done) under build/`tmpdir` and put the module in `folder`."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        so = Path(ffi.compile(tmpdir=str(ROOT / "build" / tmpdir), verbose=False))
    finally:
        os.chdir(cwd)
    target = folder / so.name
    # a new inode renamed into place: running workers keep their mapping of the old file
    staging = target.with_suffix(".so.new")
    shutil.copy2(so, staging)
    os.replace(staging, target)
    return target
