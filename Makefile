# php-gateway: `make serve` starts the server on www/, `make test` runs the test suite.
# Both install whatever is missing first (Debian packages, the ZTS libphp build, the
# virtualenv, the compiled bridge) and reuse what is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
ARGS ?=
# the ZTS build also makes php-fpm from the same compile: the tests' nginx + php-fpm baseline
export PHP_WITH_FPM := 1

.PHONY: serve test lint deps php bridge bench clean image-test

$(VENV_STAMP): pyproject.toml
	scripts/install-system-deps.sh test
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

deps: $(VENV_STAMP)

php:
	scripts/build-php.sh >/dev/null

# Compiles bridge/ and ext/ against the cached libphp into gateway/php/_phpbridge*.so, and
# the shared rate-limit table into gateway/pipeline/_rate_table*.so and the nghttp2 glue into
# gateway/protocol/_nghttp2*.so; each skipped when its sources (and the PHP prefix) are unchanged.
bridge: deps php
	PHP_PREFIX=$$(scripts/build-php.sh 2>/dev/null | tail -1) $(PY) -m gateway.php.build
	$(PY) -m gateway.pipeline.rate_table_build
	$(PY) -m gateway.protocol.nghttp2_build

serve: bridge
	$(VENV)/bin/php-gateway --document-root www $(ARGS)

test: bridge
	$(VENV)/bin/ruff check gateway tests $(wildcard bench)
	$(VENV)/bin/mypy gateway
	$(PY) -m pytest -q $(ARGS)

lint: deps
	$(VENV)/bin/ruff check gateway tests $(wildcard bench)
	$(VENV)/bin/mypy gateway

bench: bridge
	bench/run.sh $(ARGS)

# Builds the Docker image with the machine's engine (docker, else podman) and tests it as
# README.md runs it; "skipped: no container engine" without one. Not part of `make test`:
# the image build compiles PHP once more (~7 min on 2 cores). See docs/operations.md.
image-test: deps
	scripts/image-test.sh

clean:
	rm -rf build gateway/php/_phpbridge*.so gateway/php/_phpbridge.c \
	  gateway/pipeline/_rate_table*.so gateway/pipeline/_rate_table.c \
	  gateway/protocol/_nghttp2*.so gateway/protocol/_nghttp2.c
