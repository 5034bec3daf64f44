# Two commands after a clone:  make sweep  (run the main job)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SWEEP ?= sweeps/mnist.yaml
ARGS ?=

.PHONY: setup sweep sweep-offline test lint typecheck unit compose-test bench clean

# Re-installs when pyproject.toml changes. pip (not uv) so torch comes from a local wheel cache if one exists.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

sweep: setup  ## run the MNIST sweep on SQLite (downloads MNIST once into ./data)
	$(BIN)/regsweep launch $(SWEEP) $(ARGS)

sweep-offline: setup  ## the same on scikit-learn's bundled digits: no network, about a minute
	$(BIN)/regsweep launch sweeps/digits.yaml $(ARGS)

lint: setup  ## ruff, and the layering contract (import-linter)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# One pytest worker per core, up to 4; each test file runs whole on one of them, so that
# a module's shared fixture (the compose stack, a trained sweep) is set up once.
unit: setup
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile $(ARGS)

test: lint typecheck unit

compose-test: setup  ## docker compose up --scale worker=4 for real (needs Docker; about 4 min cached)
	$(BIN)/pytest -m docker $(ARGS)

BENCHMARKS := epoch_speed packed orchestration trial_overhead pruning workers memory quality ablation verdict_time verdict_calibration report_scale tabular

bench: setup  ## every benchmark writes its section of BENCHMARKS.md (about 45 minutes, tabular.py 20 to 30 of them)
	for name in $(BENCHMARKS); do $(BIN)/python benchmarks/$$name.py || exit 1; done
	$(BIN)/python benchmarks/packed.py --threads 2  # packing's other half: both cores

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache regsweep.db regsweep.db-* regsweep.db.lock regsweep.db.*.lock
