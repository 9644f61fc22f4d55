# The README's two commands: `make demo` (set up + train/evaluate DT and DMamba on the default
# dataset) and `make test` (set up + the fast test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint bench clean

setup: $(STAMP)

# torch first, pinned: on a CPU-only machine this takes the local CPU build, and the project's
# `torch>=2.4` range is then already satisfied (nothing pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/decision-seq train -m experiment=demo model=dt,dmamba

test: setup
	$(BIN)/python -m pytest -q

# ruff: lint rules and formatting (config in pyproject.toml); CI runs this too.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: setup
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf outputs multirun wandb .pytest_cache
