# Two commands do all set-up on a fresh machine:  make run   |   make test
# Everything installs into .venv/ from uv.lock (uv itself is pinned and bootstrapped by pip).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
SYNC := $(UV) sync --frozen --inexact --all-extras --no-extra mssql
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format install install-dev loadtest bench clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is needed (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "venv is missing: run  apt-get install -y python3-venv"; exit 1; }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.runtime: uv.lock pyproject.toml | $(UV)
	$(SYNC) --no-dev
	@touch $@

$(VENV)/.dev: uv.lock pyproject.toml | $(UV)
	$(SYNC)
	@touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Serve the API on the embedded default (SQLite file + in-process cache); env overrides.
run: install
	$(PY) -m app --host $(HOST) --port $(PORT)

## Install what the tests start (PostgreSQL, redis-server, Prometheus...) and run them all.
test: install-dev
	scripts/install-test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy building_blocks app tests bench
	$(VENV)/bin/lint-imports

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
