"""Which file an X-Sendfile / X-Accel-Redirect head names, and which headers go with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import AccelRoot
from gateway.pipeline.php_stage import _read_head
from gateway.pipeline.sendfile import Refused, Sendfile, _merge
from gateway.pipeline.static import StaticFiles


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "files" / "sub").mkdir(parents=True)
    (tmp_path / "files" / "sub" / "a.pdf").write_bytes(b"%PDF")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "r.txt").write_text("r")
    (tmp_path / "private" / "out").symlink_to(tmp_path / "files")
    return tmp_path


def target(sendfile: Sendfile, name: bytes, value: bytes) -> str:
    return sendfile._target([(b"content-type", b"text/html"), (name, value)])


def test_x_sendfile_inside_its_roots(tree: Path) -> None:
    s = Sendfile((tree / "files",), None, StaticFiles(None))
    path = f"{tree}/files/sub/a.pdf".encode()
    assert target(s, b"x-sendfile", path) == f"{tree}/files/sub/a.pdf"
    for bad in (b"/etc/passwd", f"{tree}/files/../private/r.txt".encode(), b"files/sub/a.pdf",
                f"{tree}/files-other/x".encode()):
        with pytest.raises(Refused):
            target(s, b"x-sendfile", bad)
    with pytest.raises(Refused, match="X_SENDFILE_ROOTS"):
        target(Sendfile((), None, StaticFiles(None)), b"x-sendfile", path)


@pytest.mark.parametrize(("prefix", "uri", "rel"), [
    ("/", b"/r.txt", "r.txt"), ("/", b"/r.txt?download=1", "r.txt"),
    ("/protected/", b"/protected/r.txt", "r.txt"), ("/protected/", b"/protected/%72.txt", "r.txt"),
])
def test_x_accel_redirect_under_its_root(tree: Path, prefix: str, uri: bytes, rel: str) -> None:
    s = Sendfile((), AccelRoot(prefix, tree / "private"), StaticFiles(None))
    assert target(s, b"x-accel-redirect", uri) == f"{tree}/private/{rel}"


@pytest.mark.parametrize("uri", [
    b"/protected/../files/sub/a.pdf", b"/protected/%2e%2e/x", b"/other/r.txt", b"r.txt",
    b"/protected/out/sub/a.pdf", b"/protected/a%00.txt", b"/protected/a\\b",
])
def test_x_accel_redirect_refusals(tree: Path, uri: bytes) -> None:
    s = Sendfile((), AccelRoot("/protected/", tree / "private"), StaticFiles(None))
    with pytest.raises(Refused):
        target(s, b"x-accel-redirect", uri)


def test_headers_of_the_file_response() -> None:
    php = [(b"content-type", b"text/html; charset=UTF-8"), (b"x-accel-redirect", b"/p/a"),
           (b"x-accel-buffering", b"no"), (b"content-disposition", b"attachment"),
           (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"content-length", b"25"),
           (b"etag", b'"php"'), (b"x-sendfile", b"/x")]
    file = [(b"content-type", b"application/pdf"), (b"etag", b'"1-2"'),
            (b"last-modified", b"Thu"), (b"cache-control", b"public, max-age=86400"),
            (b"accept-ranges", b"bytes"), (b"x-content-type-options", b"nosniff"),
            (b"content-length", b"2")]
    assert _merge(file, php) == [
        (b"content-type", b"application/pdf"), (b"etag", b'"1-2"'), (b"last-modified", b"Thu"),
        (b"accept-ranges", b"bytes"), (b"x-content-type-options", b"nosniff"),
        (b"content-length", b"2"), (b"content-disposition", b"attachment"),
        (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
    ]
    chosen = _merge(file, [(b"content-type", b"application/x-custom")])
    assert chosen[0] == (b"content-type", b"application/x-custom")
    # the PHP stage reads whether a head names a file (X-Sendfile, X-Accel-Redirect)
    assert _read_head(200, php)[2] and not _read_head(200, [(b"content-type", b"text/html")])[2]
