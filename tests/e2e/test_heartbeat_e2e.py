"""gateway_request_heartbeat() (and tokio_request_heartbeat()) against the real server: a
script that keeps beating outlives REQUEST_TIMEOUT, one that does not gets its 504, and no
heartbeat reaches past REQUEST_HEARTBEAT_MAX, or any when it is off."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_harness import Server, start_server

SCRIPTS = {
    # about 1.8 s of work against REQUEST_TIMEOUT=1s, beating between the steps
    "beating.php": """<?php
        $beats = [];
        for ($i = 0; $i < 3; $i++) {
            usleep(600000);
            $beats[] = empty($_GET['quiet']) ? gateway_request_heartbeat(1) : null;
        }
        echo json_encode($beats);""",
    "bounds.php": """<?php
        header('Content-Type: application/json');
        echo json_encode([
            'far' => gateway_request_heartbeat(10),  // past REQUEST_HEARTBEAT_MAX=4s
            'negative' => gateway_request_heartbeat(-1),
            'default' => gateway_request_heartbeat(),  // REQUEST_TIMEOUT again
            'tokio' => tokio_request_heartbeat(2),
        ]);""",
    "exhausted.php": """<?php
        // keeps beating every 0.5 s: the beats stop counting 4 s after the start
        $start = microtime(true);
        while (true) {
            usleep(500000);
            if (!gateway_request_heartbeat(1)) {
                error_log(sprintf('heartbeat refused after %.1f s', microtime(true) - $start));
                usleep(1500000);  // REQUEST_TIMEOUT now ends it
                echo 'not reached';
                break;
            }
        }""",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heartbeat-root")
    for name, text in SCRIPTS.items():
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("heartbeat"), root,
                     env={"REQUEST_TIMEOUT": "1s", "REQUEST_HEARTBEAT_MAX": "4s"})
    yield s
    s.stop()


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=15)


def test_heartbeats_outlive_request_timeout(server: Server) -> None:
    r = get(server, "/beating.php")
    assert (r.status_code, r.json()) == (200, [True, True, True])
    r = get(server, "/beating.php?quiet=1")
    assert r.status_code == 504  # the same work without heartbeats


def test_heartbeat_bounds(server: Server) -> None:
    r = get(server, "/bounds.php")
    assert r.status_code == 200
    assert r.json() == {"far": False, "negative": False, "default": True, "tokio": True}


def test_no_heartbeat_past_the_maximum(server: Server) -> None:
    started = time.monotonic()
    r = get(server, "/exhausted.php")
    took = time.monotonic() - started
    assert r.status_code == 504
    assert 3.0 < took < 6.5, took  # the refused beat came at ~3.5 s, then 1 s of timeout
    assert "heartbeat refused after 3." in server.logs()


def test_heartbeats_refused_when_off(tmp_path: Path, root: Path) -> None:
    s = start_server(tmp_path, root, env={"REQUEST_TIMEOUT": "1s",
                                          "REQUEST_HEARTBEAT_MAX": "off"})
    try:
        r = get(s, "/bounds.php")
        assert r.json() == {"far": False, "negative": False, "default": False, "tokio": False}
        assert get(s, "/beating.php").status_code == 504
    finally:
        s.stop()
    s = start_server(tmp_path, root, env={"REQUEST_TIMEOUT": "off"})
    try:
        r = get(s, "/bounds.php")  # no deadline, nothing to extend
        assert json.loads(r.content)["default"] is False
    finally:
        s.stop()
