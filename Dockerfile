# syntax=docker/dockerfile:1
# php-gateway image: ZTS libphp + the Python front end, no build tools at run time.
#   docker build -t php-gateway .
#   docker run -p 8080:8080 -v ./www:/var/www/html php-gateway
# Flags after the image name go to php-gateway (e.g. `... php-gateway --index-file index.php`);
# every flag also has an environment variable, see docs/configuration.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
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

# The same steps as `make bridge`, without its dev extras and test tools (not wanted at run time).
COPY . .
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -e . \
 && PHP_PREFIX="$(cat /opt/php-gateway/prefix)" /opt/venv/bin/python -m gateway.php.build \
 && /opt/venv/bin/python -m compileall -q gateway \
 && rm -rf build "$PHP_GATEWAY_CACHE/src" "$(cat /opt/php-gateway/prefix)/source"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY scripts/install-system-deps.sh /tmp/install-system-deps.sh
RUN /tmp/install-system-deps.sh runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/install-system-deps.sh \
 && useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin php-gateway

COPY --from=build /opt/php-gateway /opt/php-gateway
COPY --from=build /opt/venv /opt/venv
# The default site; a volume mounted here replaces it.
COPY www/ /var/www/html/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOCUMENT_ROOT=/var/www/html \
    LISTEN_ADDR=0.0.0.0:8080 \
    TLS_LISTEN_ADDR=0.0.0.0:8443 \
    INTERNAL_ADDR=0.0.0.0:9090 \
    ERROR_PAGES_DIR=/opt/php-gateway/app/www/errors

WORKDIR /var/www/html
# numeric (= php-gateway) so Kubernetes runAsNonRoot can verify it
USER 10001:10001
VOLUME /var/www/html
# 8080 HTTP; 8443 HTTPS + HTTP/3 (only with TLS_CERT/TLS_KEY); 9090 /health /metrics.
EXPOSE 8080/tcp 8443/tcp 8443/udp 9090/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('INTERNAL_ADDR', ':9090').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["php-gateway"]
