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
# make loadtest: HOST may also be a full URL (http://users.example:8080).
SCENARIO ?= mixed
USERS ?= 20
SPAWN_RATE ?= $(USERS)
RUN_TIME ?= 30s
LOAD_URL = $(if $(findstring ://,$(HOST)),$(HOST),http://$(HOST):$(PORT))
LOAD_CLASS_read := ReadUser
LOAD_CLASS_list := ListUser
LOAD_CLASS_write := WriteUser
LOAD_CLASS_mixed := MixedUser
LOAD_CLASS_pool := PoolUser

.PHONY: run test lint format audit install install-dev loadtest bench bench-instructions bench-paired clean

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

## Load-test a running deployment, headless, with a summary (req/s, p50/p95/p99, failures):
##   make loadtest [HOST=http://host:8000] [SCENARIO=read|list|write|mixed|pool|spike]
##                 [USERS=20] [RUN_TIME=30s]   (read: LOAD_HOT_SHARE=0.9 LOAD_HOT_SET=50)
loadtest: install-dev
	@case "$(SCENARIO)" in read|list|write|mixed|pool|spike) ;; \
	  *) echo "SCENARIO must be one of read list write mixed pool spike"; exit 2;; esac
	PYTHONPATH=. LOAD_SPIKE_USERS=$(USERS) $(VENV)/bin/locust --headless --only-summary \
	  --host $(LOAD_URL) -u $(USERS) -r $(SPAWN_RATE) \
	  $(if $(filter spike,$(SCENARIO)),-f tests/load/spike.py,-f tests/load/locustfile.py -t $(RUN_TIME) $(LOAD_CLASS_$(SCENARIO)))

## Benchmark against hand-written baselines (own PostgreSQL + replica + Redis); writes
## bench/RESULTS.md. BENCH_ARGS=--quick for a fast sanity run.
bench: install-dev
	scripts/install-test-deps
	$(PY) -m bench $(BENCH_ARGS)

## Telemetry's cost as CPU instructions per request (valgrind's callgrind; ~10 minutes);
## writes its section of bench/RESULTS.md. BENCH_ARGS=--quick prints only.
bench-instructions: install-dev
	scripts/install-test-deps
	$(PY) -m bench.instructions $(BENCH_ARGS)

## Telemetry's cost as CPU time per request, on and off served in turns (~10 minutes);
## writes its section of bench/RESULTS.md (BENCH_ARGS='--turns 60' and so on;
## BENCH_ARGS=--server: through uvicorn driven by wrk, a section of its own).
bench-paired: install-dev
	scripts/install-test-deps
	$(PY) -m bench.paired --record $(BENCH_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy building_blocks app tests bench
	$(VENV)/bin/lint-imports

## Known vulnerabilities in the locked dependencies (pip-audit; needs PyPI's per-release JSON
## API or OSV). --strict: a package that cannot be checked fails the run, never a silent pass.
audit: install-dev
	$(UV) export --frozen --no-hashes --all-extras --no-emit-project > $(VENV)/audit-requirements.txt
	$(VENV)/bin/pip-audit --strict --no-deps --disable-pip -r $(VENV)/audit-requirements.txt

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
