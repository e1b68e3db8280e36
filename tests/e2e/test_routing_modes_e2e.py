"""Routing as the real server does it: ROUTING=try-files on a WordPress-shaped tree (every
.php runs, pretty URLs reach index.php, directories their index), and symlinks followed out
of the document root by default, refused with SYMLINKS=inside-root, never exposing a
dotfile or PHP source either way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_harness import Server, start_server

SHOW = ("<?php header('Content-Type: application/json'); echo json_encode(["
        "'script' => $_SERVER['SCRIPT_NAME'], 'path_info' => $_SERVER['PATH_INFO'],"
        "'uri' => $_SERVER['REQUEST_URI'], 'get' => (object) $_GET]);")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WordPress-shaped root, with Laravel-style storage and Debian-style shared files
    symlinked from outside it."""
    base = tmp_path_factory.mktemp("site")
    root = base / "public"
    for rel in ("index.php", "wp-login.php", "wp-admin/index.php", "wp-admin/admin-ajax.php"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(SHOW)
    (root / "wp-content" / "uploads").mkdir(parents=True)
    (root / "wp-content" / "uploads" / "a.txt").write_text("upload\n")
    (root / "wp-includes").mkdir()
    (root / "wp-includes" / "version.inc").write_text("<?php $v = 1;")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (root / "empty").mkdir()
    (root / ".env").write_text("SECRET=1\n")
    storage = base / "storage" / "app" / "public"  # php artisan storage:link
    storage.mkdir(parents=True)
    (storage / "avatar.txt").write_text("avatar\n")
    (storage / ".htpasswd").write_text("u:secret\n")
    (root / "storage").symlink_to(storage)
    shared = base / "shared"  # /etc/wordpress/config.php -> wp-config.php in Debian's layout
    shared.mkdir()
    (shared / "plugin.php").write_text(SHOW)
    (root / "plugin.php").symlink_to(shared / "plugin.php")
    (root / "env.txt").symlink_to(root / ".env")
    (root / "source.txt").symlink_to(root / "wp-login.php")
    return root


@pytest.fixture(scope="module")
def wp(tmp_path_factory: pytest.TempPathFactory, site: Path) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("wp"), site, env={"ROUTING": "try-files"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory, site: Path) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("confined"), site,
                     env={"ROUTING": "try-files", "SYMLINKS": "inside-root"})
    yield s
    s.stop()


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10, follow_redirects=False)


@pytest.mark.parametrize(("path", "script", "path_info", "query"), [
    ("/wp-login.php?action=lostpassword", "/wp-login.php", "", {"action": "lostpassword"}),
    ("/wp-admin/admin-ajax.php", "/wp-admin/admin-ajax.php", "", {}),
    ("/wp-admin/", "/wp-admin/index.php", "", {}),
    ("/", "/index.php", "", {}),
    ("/hello-world/", "/index.php", "", {}),
    ("/2024/05/hello?replytocom=3", "/index.php", "", {"replytocom": "3"}),
    ("/wp-login.php/extra", "/wp-login.php", "/extra", {}),
])
def test_try_files_runs_every_php_file_and_falls_back(wp: Server, path: str, script: str,
                                                      path_info: str,
                                                      query: dict[str, str]) -> None:
    r = get(wp, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.content) == {"script": script, "path_info": path_info, "uri": path,
                                     "get": query}


def test_try_files_files_and_directories(wp: Server) -> None:
    r = get(wp, "/wp-content/uploads/a.txt")
    assert (r.status_code, r.content) == (200, b"upload\n")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = get(wp, "/wp-admin?x=1")
    assert (r.status_code, r.headers["location"]) == (301, "/wp-admin/?x=1")
    r = get(wp, "/docs/")
    assert (r.status_code, r.content) == (200, b"<p>docs</p>")
    assert get(wp, "/empty/").status_code == 403  # nginx: directory index is forbidden
    assert get(wp, "/missing.php").status_code == 404
    for secret in ("/wp-includes/version.inc", "/.env"):
        r = get(wp, secret)
        assert r.status_code == 404 and b"SECRET" not in r.content and b"<?php" not in r.content


def test_symlinks_out_of_the_root_are_followed(wp: Server) -> None:
    r = get(wp, "/storage/avatar.txt")
    assert (r.status_code, r.content) == (200, b"avatar\n")
    r = get(wp, "/plugin.php?x=2")
    assert r.status_code == 200
    assert json.loads(r.content)["script"] == "/plugin.php"


@pytest.mark.parametrize("path", ["/storage/.htpasswd", "/env.txt", "/source.txt"])
def test_followed_symlinks_never_expose_secrets_or_source(wp: Server, confined: Server,
                                                          path: str) -> None:
    for server in (wp, confined):
        r = get(server, path)
        assert r.status_code in (403, 404), (server.env.get("SYMLINKS"), path)
        assert b"secret" not in r.content.lower() and b"<?php" not in r.content


def test_inside_root_refuses_symlinks_leaving_it(confined: Server) -> None:
    assert get(confined, "/storage/avatar.txt").status_code == 403
    assert get(confined, "/plugin.php").status_code == 403
    r = get(confined, "/wp-content/uploads/a.txt")
    assert (r.status_code, r.content) == (200, b"upload\n")
