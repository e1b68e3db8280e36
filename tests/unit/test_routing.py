"""Routing decisions in both modes against a real directory tree with hostile paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.routing import (
    FORBIDDEN,
    NOT_FOUND,
    PhpScript,
    Redirect,
    Route,
    Router,
    StaticFile,
    is_php_source,
    resolve,
    split_target,
)

FILES = [
    "index.php", "a.txt", "with space.txt", "café.txt", "other.php", "info.phtml", "lib.inc",
    "app.phar", "config.php.bak", "notes.txt~", "UPPER.PHP", ".env", ".htaccess", ".git/config",
    "sub/b.php", "sub/page.html", "sub/.hidden", "htmlonly/index.html", "dir.php/inner.txt",
    ".well-known/acme-challenge/token", ".well-known/.secret", "evil.example/x.txt",
    "both/index.php", "both/index.html", "cafédir/x.txt",
]


def make_tree(base: Path) -> Path:
    root = base / "root"
    for rel in FILES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {rel}\n")
    (root / "empty").mkdir()
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (outside / "evil.php").write_text("<?php echo 'evil';\n")
    (root / "link_out").symlink_to(outside)
    (root / "file_out").symlink_to(outside / "secret.txt")
    (root / "php_out.php").symlink_to(outside / "evil.php")
    (root / "link_in").symlink_to(root / "sub")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("docroot"))


@pytest.fixture
def trad(tree: Path) -> Router:
    return Router(tree)


@pytest.fixture
def spe(tree: Path) -> Router:
    return Router(tree, "index.php")


def script(root: Path, name: str, path_info: str = "") -> PhpScript:
    return PhpScript(f"{root}{name}", name, path_info, str(root))


def static(root: Path, rel: str) -> StaticFile:
    path = root / rel
    st = path.stat()
    return StaticFile(path, st.st_size, st.st_mtime_ns)


# ------------------------------------------------------------------ traditional mode


@pytest.mark.parametrize(
    ("target", "name", "path_info"),
    [
        ("/", "/index.php", ""),
        ("/index.php", "/index.php", ""),
        ("/index.php?x=1&y=2", "/index.php", ""),
        ("/sub/b.php", "/sub/b.php", ""),
        ("/sub/b.php/extra/path", "/sub/b.php", "/extra/path"),
        ("/sub/b.php/extra/", "/sub/b.php", "/extra/"),
        ("/sub/b.php/", "/sub/b.php", "/"),
        ("/sub/b.php/caf%C3%A9", "/sub/b.php", "/café"),
        ("//sub//b.php", "/sub/b.php", ""),
        ("/both/", "/both/index.php", ""),
        ("/link_in/b.php", "/link_in/b.php", ""),
        ("http://example.com/sub/b.php/x?q", "/sub/b.php", "/x"),
    ],
)
def test_traditional_runs_scripts(trad: Router, tree: Path, target: str, name: str,
                                  path_info: str) -> None:
    assert trad.resolve(target) == script(tree, name, path_info)


@pytest.mark.parametrize(
    ("target", "rel"),
    [
        ("/a.txt", "a.txt"),
        ("/a.txt?v=3", "a.txt"),
        ("/with%20space.txt", "with space.txt"),
        ("/caf%C3%A9.txt", "café.txt"),
        ("/sub/page.html", "sub/page.html"),
        ("/htmlonly/", "htmlonly/index.html"),
        ("/dir.php/inner.txt", "dir.php/inner.txt"),
        ("/link_in/page.html", "link_in/page.html"),
        ("/.well-known/acme-challenge/token", ".well-known/acme-challenge/token"),
    ],
)
def test_traditional_serves_static(trad: Router, tree: Path, target: str, rel: str) -> None:
    route = trad.resolve(target)
    assert route == static(tree, rel)
    assert isinstance(route, StaticFile) and route.path.is_absolute()


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/sub", "/sub/"),
        ("/sub?a=1&b=2", "/sub/?a=1&b=2"),
        ("//sub", "/sub/"),
        ("//evil.example", "/evil.example/"),  # never a scheme-relative (off-site) Location
        ("/link_in", "/link_in/"),
        ("/.well-known", "/.well-known/"),
        ("/sub?a=%20b&c=d e\r\nX: y", "/sub/?a=%20b&c=d%20e%0D%0AX:%20y"),
        ("/s%75b", "/s%75b/"),
        ("/caf%C3%A9dir", "/caf%C3%A9dir/"),
    ],
)
def test_directory_without_slash_redirects(trad: Router, target: str, location: str) -> None:
    assert trad.resolve(target) == Redirect(location, 301)


@pytest.mark.parametrize(
    "target",
    ["/missing", "/missing.php", "/sub/", "/empty/", "/a.txt/", "/sub/missing.php/x",
     "/fifo", "*", "", "/a%2Fb", "/sub%2Fb.php", "/" + "x" * 5000],
)
def test_traditional_not_found(trad: Router, target: str) -> None:
    assert trad.resolve(target) == NOT_FOUND


# ------------------------------------------------------------------ never served, any mode

NEVER_SERVED = [
    # dotfiles and dot-directories
    "/.env", "/.htaccess", "/.git/config", "/.git/", "/sub/.hidden", "/.well-known/.secret",
    "/sub/.well-known/x", "/%2eenv", "/%2Eenv",
    # traversal, raw and encoded
    "/../outside/secret.txt", "/sub/../a.txt", "/./a.txt", "/%2e%2e/outside/secret.txt",
    "/%2E%2E/outside/secret.txt", "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/.%2e/a.txt",
    "/..%2foutside/secret.txt", "/..%2Foutside%2Fsecret.txt", "/sub/..%5c..%5coutside",
    # backslashes and NUL bytes
    "/sub\\b.php", "/sub%5cb.php", "/sub%5Cpage.html", "/a.txt%00.php", "/index.php%00",
    "/a.txt%00",
    # PHP source and its backups as static files
    "/info.phtml", "/lib.inc", "/app.phar", "/config.php.bak", "/notes.txt~", "/UPPER.PHP",
]


@pytest.mark.parametrize("target", NEVER_SERVED)
@pytest.mark.parametrize("index_file", [None, "index.php", "index.html"])
def test_never_served(tree: Path, target: str, index_file: str | None) -> None:
    assert Router(tree, index_file).resolve(target) == NOT_FOUND


@pytest.mark.parametrize("target", ["/link_out/secret.txt", "/file_out", "/link_out/"])
@pytest.mark.parametrize("index_file", [None, "index.php"])
def test_symlink_out_of_root_is_forbidden_when_confined(tree: Path, target: str,
                                                        index_file: str | None) -> None:
    route = Router(tree, index_file, symlinks="inside-root").resolve(target)
    if index_file and target.endswith("/"):
        assert route == script(tree, "/index.php")  # a directory path is the app's business
    else:
        assert route == FORBIDDEN


def test_script_symlinked_out_of_root_is_forbidden_when_confined(tree: Path) -> None:
    router = Router(tree, symlinks="inside-root")
    assert router.resolve("/php_out.php") == FORBIDDEN
    assert router.resolve("/link_out/evil.php") == FORBIDDEN


@pytest.mark.parametrize("mode", ["traditional", "try-files"])
def test_symlinks_out_of_root_are_followed_by_default(tree: Path, mode: str) -> None:
    # nginx's default (disable_symlinks off): Laravel's storage:link, Debian's app layouts
    router = Router(tree, mode=mode)
    assert router.resolve("/link_out/secret.txt") == StaticFile(
        tree / "link_out/secret.txt", 7, (tree / "link_out/secret.txt").stat().st_mtime_ns)
    assert router.resolve("/file_out") == static(tree, "file_out")
    assert router.resolve("/php_out.php") == script(tree, "/php_out.php")
    assert router.resolve("/link_out/evil.php") == script(tree, "/link_out/evil.php")


def test_followed_symlinks_expose_no_dotfile_or_php_source(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]")
    (root / ".env").write_text("SECRET=1")
    (root / "app.php").write_text("<?php echo 1;")
    (root / "assets").symlink_to(root / ".git")  # inside: a dot segment below the root
    (root / "env.txt").symlink_to(root / ".env")
    (root / "source.txt").symlink_to(root / "app.php")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".htpasswd").write_text("u:x")
    (outside / "ok.txt").write_text("ok")
    (root / "out").symlink_to(outside)
    for mode in ("traditional", "front-controller", "try-files"):
        router = Router(root, mode=mode)
        for target in ("/assets/config", "/env.txt", "/source.txt", "/out/.htpasswd"):
            assert not isinstance(router.resolve(target), StaticFile), (mode, target)
        assert router.resolve("/out/ok.txt") == static(root, "out/ok.txt")


# ------------------------------------------------------------------ single entry point


@pytest.mark.parametrize(
    ("target", "path_info"),
    [
        ("/", ""), ("/users/42", ""), ("/users/42?tab=posts", ""), ("/sub", ""), ("/sub/", ""),
        ("/empty/", ""), ("/missing.txt", ""), ("/a.txt/", ""), ("/api/a%2Fb", ""),
        ("/caf%C3%A9", ""), ("/%252e%252e/x", ""), ("/index.php", ""),
        ("/index.php/foo/bar", "/foo/bar"), ("/index.php/", "/"),
    ],
)
def test_entry_point_runs_front_controller(spe: Router, tree: Path, target: str,
                                           path_info: str) -> None:
    assert spe.resolve(target) == script(tree, "/index.php", path_info)


@pytest.mark.parametrize(
    ("target", "rel"),
    [("/a.txt", "a.txt"), ("/sub/page.html", "sub/page.html"),
     ("/.well-known/acme-challenge/token", ".well-known/acme-challenge/token")],
)
def test_entry_point_serves_existing_static(spe: Router, tree: Path, target: str,
                                            rel: str) -> None:
    assert spe.resolve(target) == static(tree, rel)


@pytest.mark.parametrize("target", ["/other.php", "/sub/b.php", "/sub/b.php/x", "/missing.php",
                                    "/both/index.php", "/link_out/evil.php", "/a.php/b"])
def test_entry_point_refuses_other_php(spe: Router, target: str) -> None:
    assert spe.resolve(target) == NOT_FOUND


def test_entry_point_without_front_controller_is_404(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    router = Router(tmp_path, "index.php")
    assert router.resolve("/anything") == NOT_FOUND
    assert isinstance(router.resolve("/a.txt"), StaticFile)


def test_spa_mode_falls_back_to_index_html(tree: Path) -> None:
    router = Router(tree / "htmlonly", "index.html")
    fallback = static(tree, "htmlonly/index.html")
    assert router.resolve("/") == fallback
    assert router.resolve("/app/route/42") == fallback
    assert router.resolve("/index.html") == fallback
    assert router.resolve("/index.php") == NOT_FOUND


# ------------------------------------------------------------------ try-files mode


@pytest.fixture
def wp(tree: Path) -> Router:
    return Router(tree, mode="try-files")


@pytest.mark.parametrize(
    ("target", "name", "path_info"),
    [
        ("/", "/index.php", ""),  # the directory's index (nginx `index index.php`)
        ("/index.php", "/index.php", ""),
        ("/other.php", "/other.php", ""),  # /wp-login.php: every PHP file runs
        ("/sub/b.php?x=1", "/sub/b.php", ""),
        ("/sub/b.php/extra", "/sub/b.php", "/extra"),
        ("/both/", "/both/index.php", ""),
        ("/hello-world/", "/index.php", ""),  # pretty URLs: /index.php?$args
        ("/2024/05/post", "/index.php", ""),
        ("/missing.txt", "/index.php", ""),
        ("/a.txt/", "/index.php", ""),  # a file is not a directory: $uri/ fails
        ("/api/a%2Fb", "/index.php", ""),
        ("/.well-known/missing", "/index.php", ""),
    ],
)
def test_try_files_runs_scripts_and_falls_back(wp: Router, tree: Path, target: str, name: str,
                                               path_info: str) -> None:
    assert wp.resolve(target) == script(tree, name, path_info)


@pytest.mark.parametrize(("target", "rel"), [
    ("/a.txt", "a.txt"), ("/sub/page.html", "sub/page.html"),
    ("/dir.php/inner.txt", "dir.php/inner.txt"), ("/htmlonly/", "htmlonly/index.html"),
])
def test_try_files_serves_files(wp: Router, tree: Path, target: str, rel: str) -> None:
    assert wp.resolve(target) == static(tree, rel)


def test_try_files_directories(wp: Router) -> None:
    assert wp.resolve("/sub?p=1") == Redirect("/sub/?p=1")
    assert wp.resolve("/empty/") == FORBIDDEN  # nginx: directory index is forbidden
    assert wp.resolve("/missing.php") == NOT_FOUND  # try_files $fastcgi_script_name =404
    assert wp.resolve("/missing.php/x") == NOT_FOUND
    assert wp.resolve("/lib.inc") == NOT_FOUND
    assert wp.resolve("/config.php.bak") == NOT_FOUND


def test_try_files_without_front_controller(tmp_path: Path) -> None:
    (tmp_path / "a.php").write_text("<?php")
    router = Router(tmp_path, mode="try-files")
    assert router.resolve("/pretty/url") == NOT_FOUND
    assert router.resolve("/a.php") == PhpScript(f"{tmp_path}/a.php", "/a.php", "", str(tmp_path))


@pytest.mark.parametrize(("index_file", "mode"), [
    (None, "spa"), ("index.php", "traditional"), ("index.html", "try-files"),
    ("index.html", "front-controller"), ("index.php", "spa"), (None, "nginx"),
])
def test_mode_must_fit_the_index_file(tmp_path: Path, index_file: str | None,
                                      mode: str) -> None:
    with pytest.raises(ValueError):
        Router(tmp_path, index_file, mode=mode)


def test_internal_directory_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "protected").mkdir()
    (tmp_path / "protected" / "f.txt").write_text("private")
    (tmp_path / "protected" / "x.php").write_text("<?php")
    (tmp_path / "index.php").write_text("<?php")
    (tmp_path / "alias").symlink_to(tmp_path / "protected")
    for mode in ("traditional", "try-files", "front-controller"):
        router = Router(tmp_path, mode=mode, internal_dirs=(str(tmp_path / "protected"),))
        for target in ("/protected/f.txt", "/alias/f.txt", "/protected/x.php"):
            route = router.resolve(target)
            assert route == NOT_FOUND or route == script(tmp_path, "/index.php"), (mode, target)


# ------------------------------------------------------------------ caching


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_results_are_cached_until_the_ttl(tmp_path: Path) -> None:
    clock = Clock()
    router = Router(tmp_path, cache_ttl=1.0, clock=clock)
    assert router.resolve("/new.txt") == NOT_FOUND
    (tmp_path / "new.txt").write_text("new")
    clock.now += 0.5
    assert router.resolve("/new.txt") == NOT_FOUND  # still the cached answer
    clock.now += 0.6
    assert isinstance(router.resolve("/new.txt"), StaticFile)


def test_cache_is_bounded(tmp_path: Path) -> None:
    router = Router(tmp_path, cache_size=1, clock=Clock())
    assert router.resolve("/a.txt") == NOT_FOUND
    (tmp_path / "a.txt").write_text("a")
    router.resolve("/b.txt")  # evicts /a.txt: the only slot is taken
    assert isinstance(router.resolve("/a.txt"), StaticFile)


def test_front_controller_route_follows_the_ttl(tmp_path: Path) -> None:
    clock = Clock()
    router = Router(tmp_path, "index.php", clock=clock)
    assert router.resolve("/x") == NOT_FOUND
    (tmp_path / "index.php").write_text("<?php")
    clock.now += 2
    assert isinstance(router.resolve("/y"), PhpScript)


def test_symlink_swap_deploy_is_picked_up(tmp_path: Path) -> None:
    for release in ("r1", "r2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "index.php").write_text("<?php")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "r1")
    clock = Clock()
    router = Router(current, "index.php", clock=clock)
    first = router.resolve("/")
    assert isinstance(first, PhpScript) and first.document_root == str(tmp_path / "r1")
    tmp_link = tmp_path / "next"
    tmp_link.symlink_to(tmp_path / "r2")
    tmp_link.replace(current)
    clock.now += 2
    second = router.resolve("/")
    assert isinstance(second, PhpScript)
    assert second.script_filename == str(tmp_path / "r2" / "index.php")


def test_module_level_resolve(tree: Path) -> None:
    assert resolve(b"/sub/b.php/x", tree) == script(tree, "/sub/b.php", "/x")
    assert resolve("/users/1", tree, "index.php") == script(tree, "/index.php")


def test_split_target() -> None:
    assert split_target(b"/a/b?x=1?y") == (b"/a/b", b"x=1?y")
    assert split_target(b"https://h:8443/p?q") == (b"/p", b"q")
    assert split_target(b"http://h") == (b"/", b"")
    assert split_target(b"*") == (b"", b"")


@pytest.mark.parametrize(("name", "source"),
                         [("a.php", True), ("A.PhP", True), ("x.php.bak", True), ("x.inc", True),
                          ("x~", True), ("a.phar", True), ("a.php7", True), ("a.js", False),
                          ("php.txt", False), ("phpinfo.html", False), ("a.phpx", False)])
def test_is_php_source(name: str, source: bool) -> None:
    assert is_php_source(name) is source


# ------------------------------------------------------------------ properties

SEGMENTS = st.sampled_from([
    "..", ".", "%2e%2e", "%2E.", ".%2e", "%2f", "%2F", "%5c", "\\", "%00", "", "a.txt", "sub",
    "b.php", "index.php", "link_out", "link_in", "file_out", "php_out.php", "outside",
    "secret.txt", "evil.php", ".env", ".git", "config", ".well-known", "%252e%252e", "fifo",
    "%2e%2e%2f", "..%2f", "%c0%ae%c0%ae", "x.phtml", "café.txt", "caf%C3%A9.txt", "empty",
])


def assert_confined(route: Route, root: Path) -> None:
    real_root = os.path.realpath(root)
    if isinstance(route, StaticFile):
        real = os.path.realpath(route.path)
        assert real.startswith(real_root + os.sep)
        assert os.path.isfile(real)
        rel_parts = Path(real).relative_to(real_root).parts
        assert not any(p.startswith(".") for p in rel_parts if p != ".well-known")
        assert not is_php_source(rel_parts[-1])
    elif isinstance(route, PhpScript):
        real = os.path.realpath(route.script_filename)
        assert real.startswith(real_root + os.sep) and real.endswith(".php")
        assert route.script_name.startswith("/") and route.document_root == real_root


MODES = st.sampled_from([(None, None), ("index.php", None), ("index.html", None),
                         ("index.php", "try-files")])


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(SEGMENTS, max_size=6), trailing=st.booleans(), mode=MODES)
def test_generated_paths_stay_in_root(tree: Path, segments: list[str], trailing: bool,
                                      mode: tuple[str | None, str | None]) -> None:
    target = "/" + "/".join(segments) + ("/" if trailing else "")
    router = Router(tree, mode[0], mode=mode[1], symlinks="inside-root")
    assert_confined(router.resolve(target), tree)


@settings(max_examples=300, deadline=None)
@given(target=st.binary(max_size=60), mode=MODES)
def test_arbitrary_bytes_stay_in_root(tree: Path, target: bytes,
                                      mode: tuple[str | None, str | None]) -> None:
    router = Router(tree, mode[0], mode=mode[1], symlinks="inside-root")
    assert_confined(router.resolve(b"/" + target), tree)


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(SEGMENTS, max_size=6), trailing=st.booleans(), mode=MODES)
def test_followed_symlinks_serve_no_secret(tree: Path, segments: list[str], trailing: bool,
                                           mode: tuple[str | None, str | None]) -> None:
    target = "/" + "/".join(segments) + ("/" if trailing else "")
    route = Router(tree, mode[0], mode=mode[1]).resolve(target)
    if isinstance(route, StaticFile):
        real = Path(os.path.realpath(route.path))
        assert real.is_file() and not real.name.startswith(".")
        assert not is_php_source(real.name)
    elif isinstance(route, PhpScript):
        assert route.script_name.endswith(".php") and "/." not in route.script_name


def test_worker_mode_sends_every_php_route_to_the_running_worker(tree: Path,
                                                                tmp_path: Path) -> None:
    worker = str(tmp_path / "worker.php")  # outside the root, and never stat'ed: it runs
    router = Router(tree, "index.php", mode="front-controller", worker_script=worker)
    root = os.path.realpath(tree)
    front = PhpScript(worker, "/index.php", "", root, worker=True)
    for target in ("/", "/missing/page", "/empty/", "/index.php", "/sub/"):
        assert router.resolve(target) == front, target
    assert router.resolve("/index.php/x/y") == PhpScript(worker, "/index.php", "/x/y", root,
                                                         worker=True)
    assert router.resolve("/a.txt") == static(tree, "a.txt")
    assert router.resolve("/other.php") is NOT_FOUND  # no other script runs
    with pytest.raises(ValueError, match="front-controller"):
        Router(tree, "index.php", mode="try-files", worker_script=worker)
