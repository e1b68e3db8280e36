# syntax=docker/dockerfile:1
# php-gateway image: ZTS libphp + the Python front end, no build tools at run time.
#   docker build -t php-gateway .
#   docker run --stop-timeout 130 -p 8080:8080 -v ./www:/var/www/html php-gateway
# Flags after the image name go to php-gateway (e.g. `... php-gateway --index-file index.php`);
# every flag also has an environment variable, see docs/configuration.md. Any other command
# runs as is, with the same PHP build on PATH: `... php-gateway php artisan migrate`.
# Ports, volumes, signals and stop timeouts: docs/operations.md. `make image-test` checks all
# of it against a built image.
# Debian's own Python 3.11 in both stages: the runtime needs only `python3` (no headers, no
# pip), ~50 MB less than python:3.11-slim, and the venv's interpreter path is the same in both.
ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# build-php.sh caches its prefix under here; the runtime stage copies it to the same path
# because the bridge is linked with an rpath to it.
ENV PHP_GATEWAY_CACHE=/opt/php-gateway \
    DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/php-gateway/app

# PHP first, in its own layer: the slow step, invalidated only by the build script.
COPY scripts/build-php.sh scripts/build-php.sh
RUN scripts/build-php.sh | tail -n 1 > /opt/php-gateway/prefix \
 && test -f "$(cat /opt/php-gateway/prefix)/lib/libphp.so"

# The same steps as `make bridge`, without its dev extras and test tools (not wanted at run
# time) but with the otel extra (OTEL_TRACES_EXPORTER=otlp needs the SDK and exporter);
# pip and setuptools leave the venv once it is built (the editable install's finder
# needs neither).
COPY . .
RUN scripts/install-system-deps.sh build \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -e '.[otel]' \
 && PHP_PREFIX="$(cat /opt/php-gateway/prefix)" /opt/venv/bin/python -m gateway.php.build \
 && /opt/venv/bin/python -m gateway.pipeline.rate_table_build \
 && /opt/venv/bin/python -m gateway.protocol.nghttp2_build \
 && /opt/venv/bin/python -m compileall -q gateway \
 && /opt/venv/bin/pip uninstall -q -y --disable-pip-version-check setuptools pip \
 && rm -rf build "$PHP_GATEWAY_CACHE/src" "$(cat /opt/php-gateway/prefix)/source"

# What the runtime needs of the PHP prefix: libphp.so, the CLI, the shared extensions (OPcache).
# Headers, phpize/php-config, the build kit, man pages and the C sources (bridge/, ext/, the
# cffi modules') served only the builds above;
# binaries (PHP's, the bridge's, the wheels' extension modules) lose symbols and debug info here.
# The CLI reads $prefix/etc/php.ini: the server's php.ini plus the OPcache line the server
# passes itself, so `php` sees the same settings and `php -m` the same extensions.
RUN prefix="$(cat /opt/php-gateway/prefix)" \
 && rm -rf "$prefix/include" "$prefix/php" "$prefix/bin/phpize" "$prefix/bin/php-config" \
      bridge ext \
 && find gateway -type f \( -name '*.c' -o -name '*.h' \) -delete \
 && find "$prefix/lib/php" -mindepth 1 -maxdepth 1 ! -name extensions -exec rm -rf {} + \
 && find "$prefix" /opt/venv \( -name '*.a' -o -name '*.la' \) -delete \
 && find "$prefix" /opt/venv gateway -type f \( -name '*.so' -o -name '*.so.*' \) \
      -exec strip --strip-unneeded {} + \
 && strip --strip-unneeded "$prefix/bin/php" \
 && { cat gateway/php/php.ini; \
      printf '\n; loaded by the server through its own INI entries (gateway/php/pool.py)\nzend_extension=opcache\n'; \
    } > "$prefix/etc/php.ini" \
 && mkdir -p /opt/php-gateway/bin \
 && ln -s "$prefix/bin/php" /opt/php-gateway/bin/php \
 && ln -s /opt/php-gateway/app/scripts/docker-entrypoint.sh /opt/php-gateway/bin/docker-entrypoint

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY scripts/install-system-deps.sh /tmp/install-system-deps.sh
RUN /tmp/install-system-deps.sh runtime \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
      /tmp/install-system-deps.sh \
 && useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin php-gateway

COPY --from=build /opt/php-gateway /opt/php-gateway
COPY --from=build /opt/venv /opt/venv
# The default site; a volume mounted here replaces it.
COPY www/ /var/www/html/

# Sessions, uploads and tempnam() all use the temp dir (/tmp, or $TMPDIR): with a read-only
# root filesystem mount a tmpfs there (`--read-only --tmpfs /tmp`).
ENV PATH=/opt/venv/bin:/opt/php-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOCUMENT_ROOT=/var/www/html \
    LISTEN_ADDR=0.0.0.0:8080 \
    TLS_LISTEN_ADDR=0.0.0.0:8443 \
    INTERNAL_ADDR=0.0.0.0:9090 \
    ERROR_PAGES_DIR=/opt/php-gateway/app/gateway/error_pages

WORKDIR /var/www/html
# numeric (= php-gateway) so Kubernetes runAsNonRoot can verify it
USER 10001:10001
VOLUME /var/www/html
# 8080 HTTP; 8443 HTTPS + HTTP/3 (only with TLS_CERT/TLS_KEY); 9090 /health /ready /metrics.
EXPOSE 8080/tcp 8443/tcp 8443/udp 9090/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('INTERNAL_ADDR', ':9090').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)"]
# SIGTERM drains for DRAIN_TIMEOUT_SECS (default: REQUEST_TIMEOUT, 120 s); the engine's stop
# timeout must be longer (docker run --stop-timeout 130, compose stop_grace_period: 130s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint"]
CMD ["php-gateway"]
