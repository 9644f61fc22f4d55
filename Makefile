# The README's two commands: `make demo` (set up + train/evaluate DT and DMamba on the default
# dataset) and `make test` (set up + the fast test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
MAMBA_PY_STAMP := $(VENV)/.mamba-ssm-python

.PHONY: setup setup-dev demo demo-atari test test-all lint bench gpu-dry-run gpu-carry clean

# setup: what running needs (`make demo`); setup-dev adds the dev extra (tests, ruff, the atari extra,
# the browser-test driver), which `make demo` does not wait for (about 15% of a cold install).
setup: $(STAMP)
setup-dev: $(DEV_STAMP)

# torch first, pinned: on a CPU-only machine this takes the local CPU build, and the project's
# `torch>=2.4` range is then already satisfied (nothing pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV_STAMP)

# The tests also check our kernel calls against mamba_ssm's own Python code over stand-ins for its CUDA
# extensions (tests/models/ops/test_mamba_ssm_standin.py): its Python package, installed without compiling
# (FORCE_BUILD: no attempt to fetch a prebuilt CUDA wheel; --no-deps: no triton/transformers). Test-only:
# on a GPU box scripts/build_mamba_ssm.sh installs the compiled build over it.
$(MAMBA_PY_STAMP): $(DEV_STAMP)
	$(BIN)/pip install -q wheel==0.48.0 einops==0.8.2
	MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
		$(BIN)/pip install -q --no-build-isolation --no-deps mamba-ssm==2.3.2.post1 causal-conv1d==1.7.0
	touch $(MAMBA_PY_STAMP)

# DT and DMamba as two jobs at once (joblib), each with half the cores: at this size a training step
# gains little from a second thread, so on 2 cores two 1-thread jobs finish sooner than two 2-thread
# jobs in turn (docs/benchmarks.md, "Demo"). Plain status lines instead of two interleaved bars.
demo: setup
	$(BIN)/decision-seq train -m experiment=demo model=dt,dmamba hydra/launcher=joblib hydra.launcher.n_jobs=2 \
		trainer.progress=false

# Atari end to end, offline: a small Breakout set from a briefly trained PPO agent (built once, cached),
# then DT and DMamba at the demo-atari preset, then the leaderboard. Needs the atari extra (in dev).
ATARI_DEMO_SWEEP := multirun/demo-atari/$(shell date +%Y-%m-%d_%H-%M-%S)
demo-atari: setup-dev
	$(BIN)/decision-seq datasets info decision-seq/atari-breakout/demo-v0 >/dev/null 2>&1 || \
		$(BIN)/decision-seq datasets build-atari Breakout --agent-steps 8192 --steps 4000 --level demo
	$(BIN)/decision-seq train -m experiment=demo-atari hydra.sweep.dir=$(ATARI_DEMO_SWEEP)
	$(BIN)/decision-seq leaderboard $(ATARI_DEMO_SWEEP)

# The suite on every core (pytest-xdist; TEST_WORKERS=0 runs it in one process), the slowest tests listed.
TEST_WORKERS ?= auto
test: setup-dev $(MAMBA_PY_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

# ruff: lint rules and formatting (config in pyproject.toml); CI runs this too.
lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-all: setup-dev $(MAMBA_PY_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "slow or not slow"

bench: setup
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_eval.py

# The GPU check (README: GPU and Docker) run here on the CPU, and the folder a GPU box without network needs.
gpu-dry-run: setup-dev
	PYTHON=$(BIN)/python scripts/gpu_check.sh --dry-run outputs/gpu-check-dry-run

gpu-carry: setup
	PYTHON=$(BIN)/python scripts/make_gpu_carry.sh gpu-carry

clean:
	rm -rf outputs multirun wandb .pytest_cache
