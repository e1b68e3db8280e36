#!/usr/bin/env bash
# php-gateway vs nginx + php-fpm, one command: installs what is missing, then runs the driver.
#   bench/run.sh            full run (~10 min), results to bench/results/ and docs/benchmarks.md
#   bench/run.sh --quick    smoke test (~2 min), results to the run directory only
#   bench/run.sh --defaults no options on our side, Debian's configuration on nginx + php-fpm
#   bench/run.sh --symfony  a Symfony route: nginx + php-fpm vs classic vs worker mode (bench/symfony.py)
# Other options: bench/run.sh --help
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# nginx-light, php8.2-fpm, wrk, h2load (nghttp2-client), perf: only the missing ones.
scripts/install-system-deps.sh bench

# The NTS php-fpm 8.4 baseline, built from the same Debian source as our libphp (cached).
if [ -z "${PHP_FPM_PREFIX:-}" ]; then
  PHP_FPM_PREFIX=$(PHP_VARIANT=fpm scripts/build-php.sh | tail -1)
  export PHP_FPM_PREFIX
fi

# The venv with the dev extras (trustme, httpx[http2], matplotlib, py-spy) and the bridge.
venv=${VENV:-.venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import trustme, httpx, h2, matplotlib' 2>/dev/null; then
  test -x "$venv/bin/python" || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
fi
if ! ls gateway/php/_phpbridge*.so >/dev/null 2>&1; then
  PHP_PREFIX=$(scripts/build-php.sh 2>/dev/null | tail -1) "$venv/bin/python" -m gateway.php.build
fi

if [ "${1:-}" = --symfony ]; then
  shift
  exec "$venv/bin/python" -m bench.symfony "$@"
fi
exec "$venv/bin/python" -m bench.run "$@"
