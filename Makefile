# The project's own set-up: everything it needs is installed from here.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export VAD_HOME ?= $(CURDIR)/vad_home

.PHONY: setup browser-deps test test-fast test-browser test-cluster lint typecheck bench demo demo-ped2 ui report clean \
	cluster-up cluster-down cluster-demo cluster-status

setup: $(STAMP)

# Re-install only when the dependency set changes; a no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,cluster]'
	$(BIN)/pip check
	@touch $(STAMP)

# Debian's chromium (and a font for its screenshots) for the browser tests in tests/browser; Playwright for
# Python comes with .[dev] and drives this chromium through executable_path (no `playwright install`).
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600
browser-deps:
	@command -v chromium >/dev/null && test -e /usr/share/fonts/truetype/liberation || { \
		$(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends chromium fonts-liberation; }

# The README's test command (and CI's): lint, format check, type check, then the whole suite.
test: lint typecheck
	$(BIN)/python -m pytest -q

# The fast subset on its own: no lint, no type check, no slow tests, no cluster.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not cluster"

# Only the cluster profile's tests (they start PostgreSQL, Redis, moto, MLflow, Dagster and Celery).
test-cluster: setup
	$(BIN)/python -m pytest -q -m cluster

# The browser tests alone (the UIs over a small materialized home, in headless chromium; a few minutes).
test-browser: setup browser-deps
	$(BIN)/python -m pytest -q -m browser tests/browser

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy's files and per-module strictness are in pyproject.toml ([tool.mypy]).
typecheck: setup
	$(BIN)/mypy

bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: setup
	$(BIN)/vad demo

# The same end to end run on the UCSD Ped2 videos in ../shared (read in place).
demo-ped2: setup
	$(BIN)/vad demo --dataset ucsd_ped2

ui: setup
	$(BIN)/vad ui

# Rebuild the evaluation report of VAD_DATASET (default demo) from its stored tables.
report: setup
	$(BIN)/vad report

# The cluster profile on this machine (scripts/cluster.py): every server on a free 127.0.0.1 port,
# PostgreSQL and Redis from apt when missing; state, logs and cluster.env in $(VAD_HOME)/cluster.
cluster-up: setup
	$(BIN)/python scripts/cluster.py up

cluster-status: setup
	$(BIN)/python scripts/cluster.py status

# The demo dataset through the cluster: runs queued in Postgres, executed by the Celery workers,
# tables in the object store, the model in the MLflow server.
cluster-demo: setup
	$(BIN)/python scripts/cluster.py run -- $(BIN)/vad demo

cluster-down:
	@test -x $(BIN)/python || { echo "no .venv: nothing was started"; exit 0; }
	$(BIN)/python scripts/cluster.py down

clean:
	rm -rf $(VENV) vad_home .pytest_cache
