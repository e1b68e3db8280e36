"""Compiles the bridge (bridge/ + ext/) against the cached ZTS libphp into an API-mode cffi
extension, gateway/php/_phpbridge*.so. Run as `python -m gateway.php.build`; PHP_PREFIX
names the libphp install (scripts/build-php.sh prints it). Skips the work when the sources
and the prefix are unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SOURCES = [ROOT / "bridge" / "pool.c", ROOT / "bridge" / "sapi.c", ROOT / "ext" / "gateway_ext.c"]
HEADERS = [
    ROOT / "bridge" / "bridge.h",
    ROOT / "bridge" / "internal.h",
    ROOT / "ext" / "php_gateway_ext.h",
]
STAMP = HERE / ".bridge-stamp"
CFLAGS = ["-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wno-unused-parameter"]

# Mirrors bridge/bridge.h (cffi cannot read preprocessor includes).
CDEF = """
typedef struct pg_config {
    int threads; int queue_capacity; const char *ini_path; const char *ini_entries;
    size_t body_buffer_bytes; size_t response_buffer_bytes; size_t thread_stack_bytes;
} pg_config;
typedef struct pg_request {
    const char *method; const char *request_uri; const char *query_string;
    const char *script_filename; const char *content_type; int64_t content_length;
    const char *cookie; const char *authorization; int proto_num; double request_time;
    const char *vars; size_t vars_len; const char *headers; size_t headers_len;
} pg_request;
typedef struct pg_event {
    int64_t handle; int type; int code; int flags; char *data; size_t len;
} pg_event;
typedef struct pg_stats {
    int threads; int threads_alive; int busy; int queued;
    uint64_t requests; uint64_t fatals; uint64_t rejected;
} pg_stats;
#define PG_EV_HEADERS 1
#define PG_EV_BODY 2
#define PG_EV_FINISH 3
#define PG_EV_BODY_SPACE 4
#define PG_EV_LOG 5
#define PG_EV_DONE 6
#define PG_DONE_FATAL 1
#define PG_DONE_CANCELLED 2
#define PG_DONE_TIMED_OUT 4
#define PG_DONE_BAILOUT 8
#define PG_OVERLOADED -1
#define PG_STOPPED -2
int pg_start(const pg_config *cfg, char *err, size_t errlen);
int pg_event_fd(void);
int64_t pg_submit_args(const char *method, const char *request_uri, const char *query_string,
    const char *script_filename, const char *content_type, int64_t content_length,
    const char *cookie, const char *authorization, int proto_num, double request_time,
    const char *vars, size_t vars_len, const char *headers, size_t headers_len,
    const char *body, size_t body_len, int body_complete);
size_t pg_body_write(int64_t handle, const char *data, size_t len, int eof);
void pg_ack(int64_t handle, size_t n);
void pg_cancel(int64_t handle);
void pg_interrupt(int64_t handle);
int pg_poll(pg_event *out, int max);
void pg_free_events(pg_event *events, int n);
void pg_get_stats(pg_stats *out);
void pg_stop(void);
const char *pg_php_version(void);
"""


def php_config(prefix: Path, flag: str) -> str:
    out = subprocess.run(
        [str(prefix / "bin" / "php-config"), flag], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def fingerprint(prefix: Path) -> str:
    h = hashlib.sha256(str(prefix).encode())
    for path in [*SOURCES, *HEADERS, Path(__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()


def built_module() -> Path | None:
    found = sorted(HERE.glob("_phpbridge*.so"))
    return found[0] if found else None


def build(prefix: Path) -> Path:
    includes = [flag[2:] for flag in php_config(prefix, "--includes").split()]
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "gateway.php._phpbridge",
        '#include "bridge.h"',
        sources=[str(p) for p in SOURCES],
        include_dirs=[str(ROOT / "bridge"), str(ROOT / "ext"), *includes],
        define_macros=[("ZTS", "1"), ("ZEND_ENABLE_STATIC_TSRMLS_CACHE", "1")],
        libraries=["php"],
        library_dirs=[str(prefix / "lib")],
        runtime_library_dirs=[str(prefix / "lib")],
        extra_compile_args=CFLAGS,
    )
    tmp = ROOT / "build" / "cffi"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        so = Path(ffi.compile(tmpdir=str(tmp), verbose=False))
    finally:
        os.chdir(cwd)
    target = HERE / so.name
    # A new inode, renamed into place: running workers keep mapping the old file intact.
    staging = target.with_suffix(".so.new")
    shutil.copy2(so, staging)
    os.replace(staging, target)
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
    stamp = fingerprint(prefix)
    if built_module() and STAMP.exists() and STAMP.read_text() == stamp:
        return 0
    target = build(prefix)
    write_buildinfo(prefix)
    STAMP.write_text(stamp)
    print(f"gateway.php.build: built {target.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
