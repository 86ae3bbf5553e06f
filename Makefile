# The project's own set-up: everything it needs is installed from here.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export VAD_HOME ?= $(CURDIR)/vad_home

.PHONY: setup test test-fast lint typecheck bench demo demo-ped2 ui report clean

setup: $(STAMP)

# Re-install only when the dependency set changes; a no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip check
	@touch $(STAMP)

# The README's test command (and CI's): lint, format check, type check, then the whole suite.
test: lint typecheck
	$(BIN)/python -m pytest -q

# The fast subset on its own: no lint, no type check, no slow tests.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy's files and per-module strictness are in pyproject.toml ([tool.mypy]).
typecheck: setup
	$(BIN)/mypy

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

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

clean:
	rm -rf $(VENV) vad_home .pytest_cache
