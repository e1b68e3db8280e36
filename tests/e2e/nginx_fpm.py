"""nginx in front of php-fpm 8.4, the set-up php-gateway replaces, for side-by-side tests.

php-fpm comes out of the same compile as php-gateway's libphp (scripts/build-php.sh with
PHP_WITH_FPM=1, which the Makefile sets), so the two run the same PHP from the same source
with the same php.ini; nginx is Debian's (scripts/install-system-deps.sh test). The site is
configured as Symfony's and Laravel's documentation configure nginx for a front controller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_harness import REPO, free_port

PHP_INI = REPO / "gateway" / "php" / "php.ini"


def fpm_binary() -> Path:
    from gateway.php import _buildinfo

    fpm = Path(_buildinfo.PHP_PREFIX) / "sbin" / "php-fpm"
    if not fpm.exists():
        pytest.fail(f"{fpm} is missing: build PHP with PHP_WITH_FPM=1 (make test does)")
    return fpm


@dataclass
class NginxFpm:
    procs: list[subprocess.Popen[bytes]]
    port: int
    run: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.run.glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):  # SIGQUIT: both masters' graceful stop
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_nginx_fpm(run: Path, docroot: Path, php_workers: int = 2) -> NginxFpm:
    run.mkdir(parents=True, exist_ok=True)
    port, sock = free_port(), run / "fpm.sock"
    root = os.geteuid() == 0
    (run / "php-fpm.conf").write_text(f"""[global]
pid = {run}/php-fpm.pid
error_log = {run}/php-fpm.log
daemonize = no
[app]
{"user = root" if root else ""}
{"group = root" if root else ""}
listen = {sock}
listen.mode = 0666
pm = static
pm.max_children = {php_workers}
clear_env = no
catch_workers_output = yes
""")
    (run / "nginx.conf").write_text(f"""{"user root root;" if root else ""}
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_max_body_size 64m;
    client_body_temp_path {run}/body;
    fastcgi_temp_path {run}/fastcgi;
    proxy_temp_path {run}/proxy;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
        location / {{ try_files $uri /index.php$is_args$args; }}
        location ~ ^/index\\.php(/|$) {{
            fastcgi_split_path_info ^(.+\\.php)(/.*)$;
            # fastcgi.conf, not Debian's fastcgi_params: that one now sets HTTP_HOST to $host,
            # which drops the port the client sent (a Debian security workaround)
            include /etc/nginx/fastcgi.conf;
            fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT $realpath_root;
            fastcgi_pass unix:{sock};
        }}
        location ~ \\.php$ {{ return 404; }}
    }}
}}
""")
    fpm = [str(fpm_binary()), "--nodaemonize", "--fpm-config", str(run / "php-fpm.conf"),
           "-c", str(PHP_INI), "-d", "zend_extension=opcache", "-d", "register_argc_argv=0"]
    if root:
        fpm.append("--allow-to-run-as-root")
    out = open(run / "stdout.log", "wb")  # noqa: SIM115 (the processes keep it open)
    procs = [subprocess.Popen(fpm, stdout=out, stderr=subprocess.STDOUT)]
    served = NginxFpm(procs, port, run)
    try:
        _wait(lambda: sock.exists(), procs[0], "php-fpm", served)
        procs.append(subprocess.Popen(["nginx", "-p", str(run), "-e", str(run / "nginx-error.log"),
                                       "-c", str(run / "nginx.conf")],
                                      stdout=out, stderr=subprocess.STDOUT))
        _wait(lambda: _listening(port), procs[1], "nginx", served)
    except BaseException:
        served.stop()
        raise
    return served


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(ready: object, proc: subprocess.Popen[bytes], name: str, served: NginxFpm) -> None:
    deadline = time.monotonic() + 20
    while not ready():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{served.logs()}")
        time.sleep(0.05)
