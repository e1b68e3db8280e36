#!/usr/bin/env bash
# `make image-test`: builds the Dockerfile with whatever container engine this machine has
# and runs tests/image/ against the image, the way README.md runs it (HTTP/1.1, HTTP/2,
# TLS + HTTP/3 with a mounted certificate, sessions, uploads, read-only root, non-root uid,
# /health, SIGTERM drain with a request in flight, the php CLI, size).
#
# Engine, first found: $IMAGE_TEST_ENGINE (docker or podman, as named); docker with a
# reachable daemon; a build wrapper $CONTAINER_IMAGE_TOOL (default: ../shared/tools/
# container-image.sh next to the checkout, if present) that sets up podman for a machine
# with quirks and is called as `TOOL setup` and `IMAGE=... TOOL build DIR`; podman.
# With none: prints "skipped: no container engine" and exits 0.
#
#   IMAGE_TEST_IMAGE    tag to build and test (default php-gateway)
#   IMAGE_TEST_NO_BUILD 1 = test the existing image as is
#   ARGS                extra pytest arguments (e.g. -k session)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
image=${IMAGE_TEST_IMAGE:-php-gateway}
py=${PY:-$repo/.venv/bin/python}
tool=${CONTAINER_IMAGE_TOOL:-$repo/../shared/tools/container-image.sh}

engine=${IMAGE_TEST_ENGINE:-}
build=()
if [ -n "$engine" ]; then
  build=("$engine" build -t "$image" "$repo")
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
  build=(docker build -t "$image" "$repo")
elif [ -x "$tool" ]; then
  "$tool" setup
  engine=podman
  build=(env IMAGE="$image" "$tool" build "$repo")
elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then
  engine=podman
  build=(podman build --format docker -t "$image" "$repo")  # docker format keeps HEALTHCHECK
fi
if [ -z "$engine" ]; then
  echo "image-test: skipped: no container engine (docker daemon or podman)"
  exit 0
fi

echo "image-test: engine $engine ($("$engine" --version 2>/dev/null | head -1)), image $image"
if [ "${IMAGE_TEST_NO_BUILD:-0}" != 1 ]; then
  start=$(date +%s)
  echo "image-test: ${build[*]}"
  "${build[@]}"
  echo "image-test: built in $(( $(date +%s) - start )) s"
fi
"$engine" image inspect --format 'image-test: {{.Id}} {{.Size}} bytes' "$image" | cut -c1-120

cd "$repo"
# shellcheck disable=SC2086  # ARGS is a list of pytest arguments
IMAGE_TEST_ENGINE=$engine IMAGE_TEST_IMAGE=$image \
  "$py" -m pytest tests/image -v -rs -p no:cacheprovider --timeout 900 ${ARGS:-}
