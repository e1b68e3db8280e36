"""Decides what answers a request path: a static file, a PHP script, a redirect, 404 or 403.

The raw request-target goes in (query split off here, percent-decoding done once, here).
Rules, documented for users in docs/routing.md:

* Never served, in any mode (404): a segment starting with '.' (dotfiles, dot-directories,
  '.' and '..') except a leading `/.well-known/`; NUL or backslash (raw or encoded); PHP
  source as a static file (.php .phtml .phar .inc ... anywhere in the name, and `name~`).
* Symlinks are followed (nginx's default); with `symlinks="inside-root"` a path whose
  symlinks resolve outside the document root is 403 (nginx `disable_symlinks`). Either way a
  symlink cannot expose what the URL rules refuse: a static file whose resolved path has a
  dot segment below the root, or a dot or PHP-source name at its end, is 404.
* 403: a path that cannot be stat'ed for lack of permission.
* Traditional mode (no INDEX_FILE): `/a/b.php` runs it, `/a/b.php/x/y` runs b.php with
  PATH_INFO=/x/y; a directory without its trailing slash gets 301 to add it; a directory
  runs its index.php, else serves its index.html, else 404 (no listings). An encoded slash
  (%2F) is 404.
* Single entry point (INDEX_FILE=index.php): an existing non-PHP regular file is served;
  `/index.php` and `/index.php/x` run the front controller (PATH_INFO "" or "/x", as
  Laravel's nginx config does); any other path with a PHP-source segment is 404 (Symfony's
  nginx config); everything else, directories and missing files included, runs the front
  controller with SCRIPT_NAME=/index.php and PATH_INFO="" (`try_files $uri /index.php`).
* Try-files mode (ROUTING=try-files, nginx `try_files $uri $uri/ /index.php?$args` beside
  `location ~ [^/]\\.php(/|$)`: WordPress, Drupal, MediaWiki): a PHP file runs where it
  exists (PATH_INFO as in traditional mode), a missing one is 404; an existing non-PHP file
  is served; a directory gets its 301, then its index.php or index.html, else 403 (nginx's
  "directory index is forbidden"); everything else runs the front controller.
* SPA mode (INDEX_FILE=index.html): as above, but the fallback serves that static file.
* Worker mode (WORKER_SCRIPT): front-controller routing whose front controller is the running
  worker script (SCRIPT_FILENAME), named /INDEX_FILE in the URL, whether or not a file of
  that name exists in the root.
* Directories named in `internal_dirs` (X_ACCEL_ROOT inside the root) are 404 to clients.

Results are cached per raw path for `cache_ttl` seconds in a bounded LRU, because every
request passes here; the document root's own symlinks are re-resolved at the same pace, so
an atomic symlink-swap deploy is picked up within a second.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote_from_bytes, unquote_to_bytes

if TYPE_CHECKING:
    from gateway.config import Config


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path  # absolute, under the symlink-resolved document root
    size: int  # from a stat at most `cache_ttl` old; static.py re-checks with fstat
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class PhpScript:
    script_filename: str  # absolute path of the script (SCRIPT_FILENAME)
    script_name: str  # its URL path, e.g. /index.php (SCRIPT_NAME)
    path_info: str  # "" or the decoded rest after the script, e.g. /extra/path (PATH_INFO)
    document_root: str  # symlink-resolved root (DOCUMENT_ROOT, like nginx $realpath_root)
    worker: bool = False  # answered by the worker script (WORKER_SCRIPT), already running


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str  # relative URL: the request path plus "/", and the query if any
    status: int = 301


@dataclass(frozen=True, slots=True)
class NotFound:
    status: int = 404


@dataclass(frozen=True, slots=True)
class Forbidden:
    status: int = 403


Route = StaticFile | PhpScript | Redirect | NotFound | Forbidden
ROUTING_MODES = ("traditional", "front-controller", "try-files", "spa")
SYMLINK_POLICIES = ("follow", "inside-root")
NOT_FOUND = NotFound()
FORBIDDEN = Forbidden()

# Extensions whose files are PHP code: never sent as bytes, whatever mode.
PHP_SOURCE_EXTENSIONS = frozenset(
    {"php", "phtml", "phar", "pht", "phps", "phpt", "inc",
     "php3", "php4", "php5", "php7", "php8"}
)
MAX_PATH_BYTES = 4096  # PATH_MAX: longer paths cannot name a file
_MULTI_SLASH = re.compile(rb"/{2,}")
# characters kept as-is in a Location; anything else (controls, spaces, 8-bit) is escaped
_LOCATION_SAFE = b"/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _LOCATION_SAFE + b"?"


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, raw query) of an origin-form or absolute-form request-target."""
    path, _, query = target.partition(b"?")
    if not path.startswith(b"/"):
        path = _origin_path(path)
    return path, query


def _origin_path(path: bytes) -> bytes:
    """Path of an absolute-form target (http://host/p); b"" for anything else (e.g. '*')."""
    scheme, sep, rest = path.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return b""
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"


def is_php_source(name: str) -> bool:
    """True for file names that hold PHP code or an editor/backup copy of it."""
    low = name.lower()
    return low.endswith("~") or any(p in PHP_SOURCE_EXTENSIONS for p in low.split(".")[1:])


class Router:
    def __init__(
        self,
        document_root: Path | str,
        index_file: str | None = None,
        *,
        mode: str | None = None,
        symlinks: str = "follow",
        internal_dirs: tuple[str, ...] = (),
        worker_script: str | None = None,
        cache_size: int = 4096,
        cache_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.document_root = os.path.abspath(document_root)
        if mode in ("front-controller", "try-files") and not index_file:
            index_file = "index.php"
        self.index_file = index_file or None
        self._front_is_php = self.index_file is not None and self.index_file.endswith(".php")
        if mode is None:  # what INDEX_FILE alone says (ROUTING=auto)
            mode = "traditional" if self.index_file is None else (
                "front-controller" if self._front_is_php else "spa")
        if mode not in ROUTING_MODES or symlinks not in SYMLINK_POLICIES:
            raise ValueError(f"unknown routing mode {mode!r} or symlink policy {symlinks!r}")
        if (mode == "traditional") != (self.index_file is None) or \
                (mode in ("front-controller", "try-files")) != self._front_is_php:
            raise ValueError(f"routing mode {mode!r} does not go with index file {index_file!r}")
        if worker_script is not None and mode != "front-controller":
            raise ValueError("a worker script goes with front-controller routing only")
        self.mode = mode
        self.worker_script = worker_script
        self._confined = symlinks == "inside-root"
        self._internal = tuple(os.path.realpath(d) for d in internal_dirs)
        self._cache: OrderedDict[bytes, tuple[float, Route]] = OrderedDict()
        self._cache_size = cache_size
        self._ttl = cache_ttl
        self._clock = clock
        self._root: tuple[float, str | None] = (-1.0, None)
        self._front: tuple[float, Route] = (-1.0, NOT_FOUND)  # front controller, PATH_INFO ""

    @classmethod
    def from_config(cls, config: Config) -> Router:
        worker = str(config.worker_script) if config.worker_script is not None else None
        internal = (str(config.x_accel_root.directory),) if config.x_accel_root else ()
        return cls(config.document_root, config.index_file, mode=config.routing,
                   symlinks=config.symlinks, internal_dirs=internal, worker_script=worker)

    def resolve(self, target: bytes | str) -> Route:
        """Route for a raw request-target (path plus optional ?query, not yet decoded)."""
        if isinstance(target, str):
            target = target.encode("utf-8", "surrogateescape")
        raw, _, query = target.partition(b"?")
        now = self._clock()
        hit = self._cache.get(raw)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(raw)
            route = hit[1]
        else:
            route = self._resolve(raw, now)
            self._cache[raw] = (now + self._ttl, route)
            self._cache.move_to_end(raw)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if query and type(route) is Redirect:
            location = f"{route.location}?{quote_from_bytes(query, _QUERY_SAFE)}"
            return Redirect(location, route.status)
        return route

    def clear(self) -> None:
        self._cache.clear()
        self._root = (-1.0, None)
        self._front = (-1.0, NOT_FOUND)

    # ------------------------------------------------------------ uncached resolution

    def _root_real(self, now: float) -> str | None:
        expires, root = self._root
        if expires <= now:
            root = os.path.realpath(self.document_root)
            root = root if os.path.isdir(root) else None
            self._root = (now + self._ttl, root)
            self._front = (-1.0, NOT_FOUND)
        return root

    def _resolve(self, raw: bytes, now: float) -> Route:
        if not raw.startswith(b"/"):
            raw = _origin_path(raw)
        if not raw or len(raw) > MAX_PATH_BYTES:
            return NOT_FOUND
        encoded_slash = b"%2f" in raw.lower()
        if encoded_slash and self.mode == "traditional":
            return NOT_FOUND
        decoded = unquote_to_bytes(raw) if b"%" in raw else raw
        if b"\0" in decoded or b"\\" in decoded:
            return NOT_FOUND
        text = os.fsdecode(decoded)
        segments = [s for s in text.split("/") if s]
        for i, seg in enumerate(segments):
            if seg[0] == "." and not (i == 0 and seg == ".well-known"):
                return NOT_FOUND
        root = self._root_real(now)
        if root is None:
            return NOT_FOUND
        dir_request = text.endswith("/")
        if self.mode == "traditional":
            return self._traditional(root, raw, segments, dir_request)
        if self.mode == "try-files":
            return self._try_files(root, raw, segments, dir_request, encoded_slash, now)
        return self._entry_point(root, segments, dir_request, encoded_slash, now)

    def _traditional(self, root: str, raw: bytes, segments: list[str], dir_request: bool) -> Route:
        found = self._php_in_path(root, segments, dir_request)
        if found is not None:
            return found
        rel = "/" + "/".join(segments) if segments else ""
        st = _stat(root + rel)
        if not isinstance(st, os.stat_result):
            return st
        if stat.S_ISDIR(st.st_mode):
            return self._directory(root, raw, rel, dir_request) or NOT_FOUND
        if not stat.S_ISREG(st.st_mode) or dir_request or is_php_source(segments[-1]):
            return NOT_FOUND
        return self._static(root, rel, st)

    def _try_files(self, root: str, raw: bytes, segments: list[str], dir_request: bool,
                   encoded_slash: bool, now: float) -> Route:
        if encoded_slash:
            return self._fallback(root, now)  # %2F names no file; the app may route it
        found = self._php_in_path(root, segments, dir_request)
        if found is not None:
            return found
        if segments and is_php_source(segments[-1]):
            return NOT_FOUND  # never the source, and no app route looks like x.inc
        rel = "/" + "/".join(segments) if segments else ""
        st = _stat(root + rel)
        if isinstance(st, Forbidden):
            return st
        if isinstance(st, os.stat_result):
            if stat.S_ISREG(st.st_mode) and not dir_request:
                return self._static(root, rel, st)  # try_files $uri
            if stat.S_ISDIR(st.st_mode):  # try_files $uri/, then nginx's index directive
                return self._directory(root, raw, rel, dir_request) or FORBIDDEN
        return self._fallback(root, now)  # /index.php?$args

    def _php_in_path(self, root: str, segments: list[str], dir_request: bool) -> Route | None:
        """The script named by the first `.php` segment that is a file, with the rest as
        PATH_INFO; 404 when that segment does not exist; None when no segment names one."""
        for i, seg in enumerate(segments):
            if not seg.endswith(".php"):
                continue
            script_name = "/" + "/".join(segments[: i + 1])
            st = _stat(root + script_name)
            if not isinstance(st, os.stat_result):
                return st
            if stat.S_ISDIR(st.st_mode):
                continue  # a directory called x.php: keep walking
            if not stat.S_ISREG(st.st_mode):
                return NOT_FOUND
            return self._script(root, script_name, _path_info(segments[i + 1 :], dir_request))
        return None

    def _directory(self, root: str, raw: bytes, rel: str, dir_request: bool) -> Route | None:
        """A directory: 301 to add the slash, else its index.php or index.html, else None."""
        if self._confined and not _inside(root, root + rel):
            return FORBIDDEN
        if not dir_request:
            collapsed = _MULTI_SLASH.sub(b"/", raw)
            return Redirect(quote_from_bytes(collapsed + b"/", _LOCATION_SAFE))
        index_php = _stat(root + rel + "/index.php")
        if isinstance(index_php, os.stat_result) and stat.S_ISREG(index_php.st_mode):
            return self._script(root, rel + "/index.php", "")
        index_html = self._static(root, rel + "/index.html")
        return None if index_html is NOT_FOUND else index_html

    def _entry_point(
        self, root: str, segments: list[str], dir_request: bool, encoded_slash: bool, now: float
    ) -> Route:
        index = str(self.index_file)
        if encoded_slash:
            return self._fallback(root, now)
        if self._front_is_php and segments and segments[0] == index:
            front = self._fallback(root, now)
            path_info = _path_info(segments[1:], dir_request)
            if path_info and isinstance(front, PhpScript):
                return PhpScript(front.script_filename, front.script_name, path_info, root,
                                 front.worker)
            return front
        if any(is_php_source(seg) for seg in segments):
            return NOT_FOUND
        if segments and not dir_request:
            rel = "/" + "/".join(segments)
            st = _stat(root + rel)
            if isinstance(st, os.stat_result) and stat.S_ISREG(st.st_mode):
                return self._static(root, rel, st)
        return self._fallback(root, now)

    def _fallback(self, root: str, now: float) -> Route:
        """The INDEX_FILE route, cached on its own: unique URLs all end here in framework apps."""
        expires, front = self._front
        if expires > now:
            return front
        name = f"/{self.index_file}"
        if self.worker_script is not None:
            # the worker is running already, wherever its file lies: nothing to find
            front = PhpScript(self.worker_script, name, "", root, worker=True)
        elif not self._front_is_php:
            front = self._static(root, name)
        else:
            # a missing front controller is a plain 404, like php-fpm's "Primary script unknown"
            st = _stat(root + name)
            if isinstance(st, os.stat_result) and stat.S_ISREG(st.st_mode):
                front = self._script(root, name, "")
            else:
                front = st if isinstance(st, Forbidden) else NOT_FOUND
        self._front = (now + self._ttl, front)
        return front

    def _script(self, root: str, script_name: str, path_info: str) -> Route:
        filename = root + script_name
        refused = self._vet(root, filename, static=False)
        if refused is not None:
            return refused
        return PhpScript(filename, script_name, path_info, root)

    def _static(self, root: str, rel: str, st: os.stat_result | None = None) -> Route:
        path = root + rel
        if st is None:
            found = _stat(path)
            if not isinstance(found, os.stat_result):
                return found
            if not stat.S_ISREG(found.st_mode):
                return NOT_FOUND
            st = found
        refused = self._vet(root, path, static=True)
        if refused is not None:
            return refused
        return StaticFile(Path(path), st.st_size, st.st_mtime_ns)

    def _vet(self, root: str, path: str, static: bool) -> NotFound | Forbidden | None:
        """Where the path's symlinks lead: 403 out of the root when confined; 404 to a name
        the URL rules refuse (below the root: any dot segment; outside it: a dot name at the
        end) or, for a static file, to PHP source; 404 inside an internal directory."""
        real = os.path.realpath(path)
        if real != path:
            prefix = "" if root == "/" else root
            inside = real == root or real.startswith(prefix + "/")
            if not inside and self._confined:
                return FORBIDDEN
            parts = real[len(prefix):].split("/")[1:] if inside else [os.path.basename(real)]
            for i, part in enumerate(parts):
                if part.startswith(".") and not (inside and i == 0 and part == ".well-known"):
                    return NOT_FOUND
            if static and parts and is_php_source(parts[-1]):
                return NOT_FOUND
        for internal in self._internal:
            if real == internal or real.startswith(internal + "/"):
                return NOT_FOUND  # nginx `internal`: reached by X-Accel-Redirect only
        return None


def _path_info(rest: list[str], dir_request: bool) -> str:
    """PATH_INFO from the segments after the script; a trailing slash is kept."""
    path_info = "/" + "/".join(rest) if rest else ""
    return path_info + "/" if dir_request else path_info


def _stat(path: str) -> os.stat_result | NotFound | Forbidden:
    try:
        return os.stat(path)
    except PermissionError:
        return FORBIDDEN
    except (OSError, ValueError):
        return NOT_FOUND


def _inside(root: str, path: str) -> bool:
    """True when `path` with every symlink resolved stays under `root` (already resolved)."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root if root == "/" else root + "/")


_routers: dict[tuple[str, str | None], Router] = {}


def resolve(target: bytes | str, document_root: Path | str, index_file: str | None = None) -> Route:
    """Route `target` with a shared, cached Router for this document root and mode."""
    key = (str(document_root), index_file)
    router = _routers.get(key)
    if router is None:
        router = _routers[key] = Router(document_root, index_file)
    return router.resolve(target)
