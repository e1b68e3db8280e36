#!/usr/bin/env bash
# Installs the Debian packages php-gateway's tests and tools use, only those missing.
# Usage: scripts/install-system-deps.sh [runtime|build|test|bench]   (default: test)
# runtime: what the Docker image runs on; build: Python headers + venv (the image's build stage)
set -euo pipefail
profile=${1:-test}
runtime=(ca-certificates python3 libxml2 libsqlite3-0 libssl3 libcurl4 libonig5 libpng16-16
         libjpeg62-turbo libwebp7 libfreetype6 libicu72 libzip4 libsodium23 libpq5 libargon2-1
         libnghttp2-14)
# libnghttp2-dev: the HTTP/2 adapter's cffi glue (gateway/protocol/nghttp2_build.py) links it
build_deps=(libnghttp2-dev)
# chromium: the /status page's screenshot test; prometheus: promtool checks deploy/'s config
# nginx-light, php-laravel-framework, php-symfony: the Laravel and Symfony applications the
# e2e tests serve with php-gateway and with nginx + php-fpm side by side
test_tools=(curl nghttp2-client ngtcp2-client wrk chromium prometheus nginx-light
            php-laravel-framework php-symfony)
# php-symfony-*: Symfony 5.4 for bench/symfony (the worker-mode benchmark's application)
bench_tools=(nginx-light libnginx-mod-http-brotli-filter php8.2-fpm mariadb-server
             linux-perf php-symfony-http-kernel php-symfony-routing
             php-symfony-dependency-injection php-symfony-config)
case "$profile" in
  runtime) want=("${runtime[@]}") ;;
  build) want=(python3 "${build_deps[@]}") ;;
  test) want=("${runtime[@]}" "${build_deps[@]}" "${test_tools[@]}") ;;
  bench) want=("${runtime[@]}" "${build_deps[@]}" "${test_tools[@]}" "${bench_tools[@]}") ;;
  *) echo "install-system-deps: unknown profile '$profile' (runtime|build|test|bench)" >&2; exit 2 ;;
esac
# The Makefile's `python3 -m venv` needs ensurepip; Debian's own python3 gets it from python3-venv.
if [ "$profile" != runtime ] && ! python3 -c 'import ensurepip' 2>/dev/null; then
  want+=(python3-venv)
fi
# The bridge is a C extension: Debian's python3 keeps Python.h in python3-dev.
if [ "$profile" != runtime ] && ! python3 -c \
    'import os, sysconfig; os.stat(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null; then
  want+=(python3-dev)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-system-deps: installing ${missing[*]}" >&2
"${sudo_cmd[@]}" apt-get update -qq || echo "install-system-deps: apt-get update reported errors (continuing)" >&2
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
