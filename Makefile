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

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: setup
	$(BIN)/python -m vad_pipeline.cli.demo

# The same end to end run on the UCSD Ped2 videos in ../shared (read in place).
demo-ped2: setup
	VAD_DATASET=ucsd_ped2 $(BIN)/python -m vad_pipeline.cli.demo

ui: setup
	$(BIN)/python -m vad_pipeline.cli.ui

clean:
	rm -rf $(VENV) vad_home .pytest_cache
