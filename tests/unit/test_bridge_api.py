"""The C API boundaries: Python's cffi declarations are bridge/bridge.h's own lines and cover
exactly what the Python side uses; ext/ reaches the bridge only through request_api.h."""

from __future__ import annotations

import re
from pathlib import Path

import cffi

from gateway.php import build

REPO = Path(__file__).resolve().parents[2]
# Every Python module that talks to the compiled bridge (build.py only compiles it; other
# cffi modules of the gateway have their own lib).
PYTHON_SIDE = [
    p
    for p in sorted((REPO / "gateway").rglob("*.py"))
    if p.name != "build.py" and re.search(r"_phpbridge|php import binding", p.read_text())
]
# Returned by pg_submit_args; Python treats every negative handle but PG_OVERLOADED as it.
DECLARED_FOR_C_ONLY = {"PG_STOPPED"}


def bridge_h() -> tuple[cffi.FFI, set[str]]:
    ffi = cffi.FFI()
    ffi.cdef(build.bridge_cdef())
    # An ABI-mode library names every declared function and constant without loading one.
    return ffi, set(dir(ffi.dlopen(None)))


def python_uses(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in PYTHON_SIDE:
        found.update(re.findall(pattern, path.read_text()))
    return found


def test_every_function_and_constant_python_uses_is_in_bridge_h() -> None:
    assert {p.name for p in PYTHON_SIDE} >= {"binding.py", "pool.py"}
    _, declared = bridge_h()
    used = python_uses(r"\blib\.(\w+)")
    assert {"pg_submit_args", "pg_poll", "PG_EV_DONE"} <= used  # the scan finds the uses
    assert used - declared == set()


def test_bridge_h_declares_nothing_python_leaves_unused() -> None:
    _, declared = bridge_h()
    assert declared - python_uses(r"\blib\.(\w+)") == DECLARED_FOR_C_ONLY


def test_every_type_python_allocates_is_in_bridge_h() -> None:
    ffi, _ = bridge_h()
    types = python_uses(r'\bffi\.new\(\s*"([^"]+)"')
    assert {"pg_config *", "pg_event[]", "pg_stats *"} <= types
    for ctype in types:
        ffi.typeof(ctype)  # raises for a type bridge.h does not declare


def test_build_py_has_no_hand_copy_of_the_declarations() -> None:
    source = Path(build.__file__).read_text()
    assert "typedef" not in source
    assert re.search(r"\bpg_\w+\s*\(", source) is None
    assert re.search(r"#define\s+PG_", source) is None


def quoted_includes(path: Path) -> list[str]:
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(), re.MULTILINE)


def test_ext_includes_only_the_request_api_of_the_bridge() -> None:
    for path in (REPO / "ext").glob("*.[ch]"):
        bridge_headers = [h for h in quoted_includes(path) if "bridge/" in h]
        assert set(bridge_headers) <= {"../bridge/request_api.h"}, path


def test_bridge_includes_nothing_of_ext() -> None:
    ours = {p.name for p in (REPO / "ext").iterdir()}  # PHP's own ext/standard/... is fine
    for path in (REPO / "bridge").glob("*.[ch]"):
        includes = quoted_includes(path)
        assert not [h for h in includes if "../ext/" in h or Path(h).name in ours], path
