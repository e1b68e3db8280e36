"""The servers under test: php-gateway, and nginx in front of php-fpm, on one document root.

Each writes its configuration into the run directory, starts in the foreground as a child
of the benchmark (so its whole process tree can be measured and stopped), and says which
exact commands it ran.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

REPO = Path(__file__).resolve().parent.parent
PHP_INI = REPO / "gateway" / "php" / "php.ini"
# Debian's libnginx-mod-http-brotli-filter (installed by scripts/install-system-deps.sh bench)
NGINX_BROTLI = Path("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so")


@dataclass(frozen=True)
class Endpoints:
    http_port: int
    https_port: int

    def url(self, tls: bool, path: str) -> str:
        if tls:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float, alive: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive.poll() is not None:
            raise RuntimeError(f"exited with status {alive.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def _cmdline(argv: list[str]) -> str:
    return shlex.join(argv)


@dataclass
class Server:
    """Common shape of a server under test."""

    key: str
    label: str
    endpoints: Endpoints
    rundir: Path
    cpu_prefix: list[str]  # e.g. ["taskset", "-c", "0"], or empty
    commands: list[str] = field(default_factory=list)
    procs_: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def root_pids(self) -> list[int]:
        return [p.pid for p in self.procs_]

    def alive(self) -> bool:
        return bool(self.procs_) and all(p.poll() is None for p in self.procs_)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for p in reversed(self.procs_):
            procs.stop(p)

    def version(self) -> str:
        raise NotImplementedError

    def config_files(self) -> dict[str, str]:
        """The configuration it was started with, for the results (paths are the run's)."""
        return {}


@dataclass
class NginxFpm(Server):
    """nginx (worker_processes = nginx_workers) → unix socket → php-fpm (pm = static)."""

    fpm_binary: Path = Path()
    fpm_ini_args: list[str] = field(default_factory=list)  # -d options the build needs
    docroot: Path = Path()
    php_workers: int = 1
    nginx_workers: int = 1
    cert: Path = Path()
    key_file: Path = Path()
    nginx_extra: str = ""  # more http-level directives (--nginx-extra), for tuning trials
    front_controller: str = ""  # e.g. "index.php": every other path runs it (Symfony's nginx)
    # Debian's own settings instead of the tuned side by side ones: nginx.conf's
    # `worker_processes auto`, worker_connections 768 and keepalive defaults, the www pool's
    # pm = dynamic (5 children at most), and php.ini as the fpm_ini_args leave it
    stock: bool = False
    php_ini: Path | None = PHP_INI  # None: the build's own (Debian's /etc/php/8.2/fpm/php.ini)

    def _write_configs(self) -> tuple[Path, Path, Path]:
        d = self.rundir / self.key
        for sub in ("tmp", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        sock = d / "fpm.sock"
        root = os.geteuid() == 0
        fpm_conf = d / "php-fpm.conf"
        # pm = static with max_children = the gateway's PHP thread count: same PHP capacity;
        # stock: Debian's /etc/php/*/fpm/pool.d/www.conf process manager
        pm = ("pm = dynamic\npm.max_children = 5\npm.start_servers = 2\n"
              "pm.min_spare_servers = 1\npm.max_spare_servers = 3" if self.stock else
              f"pm = static\npm.max_children = {self.php_workers}\npm.max_requests = 0")
        fpm_conf.write_text(
            f"""[global]
pid = {d}/php-fpm.pid
error_log = {d}/logs/php-fpm.log
daemonize = no

[bench]
{"user = root" if root else ""}
{"group = root" if root else ""}
listen = {sock}
listen.mode = 0666
{pm}
clear_env = no
catch_workers_output = no
"""
        )
        nginx_conf = d / "nginx.conf"
        user = "user root root;" if root else ""
        brotli = NGINX_BROTLI.exists()
        load_brotli = f"load_module {NGINX_BROTLI};" if brotli else ""
        # Stock Debian nginx + php-fpm wiring (snippets/fastcgi-php.conf), access log off like
        # php-gateway's default; keepalive_requests raised so neither server closes a
        # benchmark connection mid-run (nginx's default is 1000 requests, php-gateway has none).
        nginx_conf.write_text(
            f"""{user}
{load_brotli}
worker_processes {"auto" if self.stock else self.nginx_workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/nginx-error.log warn;
events {{ worker_connections {768 if self.stock else 4096}; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    {f"access_log {d}/logs/access.log;" if self.stock else "access_log off;"}
    sendfile on;
    tcp_nopush on;
    {"" if self.stock else "keepalive_requests 1000000;"}
    client_max_body_size 64m;
    gzip on;  # Debian's nginx.conf; the stock gzip_comp_level 1 and gzip_types text/html
    {"brotli on;" if brotli else ""}
    client_body_temp_path {d}/tmp/body;
    fastcgi_temp_path {d}/tmp/fastcgi;
    proxy_temp_path {d}/tmp/proxy;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    {self.nginx_extra}
    server {{
        listen 127.0.0.1:{self.endpoints.http_port};
        listen 127.0.0.1:{self.endpoints.https_port} ssl http2;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key_file};
        ssl_protocols TLSv1.2 TLSv1.3;  # Debian's nginx.conf; 1.22's built-in default lacks 1.3
        root {self.docroot};
        index index.php index.html;
        {self._front_location()}
        location ~ \\.php$ {{
            # Debian's snippets/fastcgi-php.conf, its relative include made absolute
            fastcgi_split_path_info ^(.+?\\.php)(/.*)$;
            try_files $fastcgi_script_name =404;
            set $path_info $fastcgi_path_info;
            fastcgi_param PATH_INFO $path_info;
            fastcgi_index index.php;
            include /etc/nginx/fastcgi.conf;
            fastcgi_pass unix:{sock};
        }}
    }}
}}
"""
        )
        return fpm_conf, nginx_conf, sock

    def _front_location(self) -> str:
        if not self.front_controller:
            return ""
        # Symfony's recommended nginx set-up: a missing file goes to the front controller
        return f"location / {{ try_files $uri /{self.front_controller}$is_args$args; }}"

    def start(self) -> None:
        fpm_conf, nginx_conf, sock = self._write_configs()
        d = self.rundir / self.key
        fpm = [
            *self.cpu_prefix, str(self.fpm_binary), "--nodaemonize", "--fpm-config", str(fpm_conf),
            *(["-c", str(self.php_ini)] if self.php_ini else []), *self.fpm_ini_args,
        ]
        if os.geteuid() == 0:
            fpm.append("--allow-to-run-as-root")
        nginx = [*self.cpu_prefix, "nginx", "-p", str(d), "-e", str(d / "logs/nginx-error.log"),
                 "-c", str(nginx_conf)]
        self.commands = [_cmdline(fpm), _cmdline(nginx)]
        log = d / "logs" / "stdout.log"
        self.procs_.append(procs.start(fpm, log))
        deadline = time.monotonic() + 20
        while not sock.exists():
            if self.procs_[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"php-fpm did not start; see {d}/logs")
            time.sleep(0.1)
        self.procs_.append(procs.start(nginx, log))
        wait_listening(self.endpoints.http_port, 20, self.procs_[1])

    def config_files(self) -> dict[str, str]:
        d = self.rundir / self.key
        return {n: (d / n).read_text() for n in ("nginx.conf", "php-fpm.conf")}

    def stop(self) -> None:
        # SIGQUIT is both masters' graceful stop; nothing is in flight between cells.
        for p in reversed(self.procs_):
            procs.stop(p, signal.SIGQUIT)

    def version(self) -> str:
        fpm = subprocess.run([str(self.fpm_binary), "-v"], capture_output=True, text=True)
        ngx = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return f"{ngx.stderr.strip()}; {fpm.stdout.splitlines()[0] if fpm.stdout else '?'}"


@dataclass
class Gateway(Server):
    """php-gateway: the supervisor and its worker processes."""

    docroot: Path = Path()
    php_workers: int = 1
    processes: int = 1
    cert: Path = Path()
    key_file: Path = Path()
    extra_args: list[str] = field(default_factory=list)  # e.g. --worker-script FILE
    sized: bool = True  # False: no --php-workers / --processes, the defaults decide

    def start(self) -> None:
        d = self.rundir / self.key
        (d / "logs").mkdir(parents=True, exist_ok=True)
        argv = [
            *self.cpu_prefix, str(REPO / ".venv" / "bin" / "php-gateway"),
            "--document-root", str(self.docroot),
            "--listen-addr", f"127.0.0.1:{self.endpoints.http_port}",
            "--tls-listen-addr", f"127.0.0.1:{self.endpoints.https_port}",
            "--tls-cert", str(self.cert), "--tls-key", str(self.key_file),
            *(["--php-workers", str(self.php_workers), "--processes", str(self.processes)]
              if self.sized else []),
            *self.extra_args,
        ]
        self.commands = [_cmdline(argv)]
        self.procs_.append(procs.start(argv, d / "logs" / "stdout.log"))
        wait_listening(self.endpoints.http_port, 60, self.procs_[0])
        wait_listening(self.endpoints.https_port, 30, self.procs_[0])

    def version(self) -> str:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True,
        ).stdout.strip()
        return f"php-gateway {rev or '?'}"
