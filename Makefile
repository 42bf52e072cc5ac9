PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
comma := ,
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
# A recipe and its overlays, e.g. CONFIG="configs/cifar10/resnet20.yaml configs/attention/eca.yaml"
CONFIG ?= configs/cifar10/resnet20.yaml configs/attention/se.yaml
# Optional extras installed with dev, e.g. EXTRAS=ray,slurm,mlflow,wandb (what CI installs).
EXTRAS ?=

.PHONY: install train test test-all lint tensorboard notebook report bench clean

install: $(STAMP)

# Reinstall only when the package metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	touch $(STAMP)

# Offline: DATA=/path/to/images trains on DIR/train/<class>/*, DIR/test/<class>/* (imagefolder);
# ARGS="--trainer.max_epochs 1 ..." adds any other command-line options.
DATA ?=
ARGS ?=

train: install
	$(BIN)/lightning fit $(foreach config,$(CONFIG),--config $(config)) $(if $(DATA),--data.dataset=imagefolder --data.root=$(DATA)) $(ARGS)

# The suite CI runs: slow end-to-end tests and GPU-only tests left out (make test-all runs all).
test: install
	$(BIN)/python -m pytest -m "not slow and not gpu"

test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

tensorboard: install
	$(BIN)/tensorboard --logdir logs

$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,notebook]"
	touch $(NOTEBOOK_STAMP)

# Jupyter on the repository (open notebooks/); paths in the notebooks are relative to the root.
notebook: $(NOTEBOOK_STAMP)
	$(BIN)/jupyter lab --notebook-dir=.

# make report RUN=logs/<experiment>/version_N (or a .ckpt): notebooks/analyze_checkpoint.ipynb
# executed for that run and rendered to <run>/report.html.
report: install
	@test -n "$(RUN)" || { echo "usage: make report RUN=logs/<experiment>/version_N (or a .ckpt file)"; exit 2; }
	$(BIN)/python -m selab.report $(RUN)

# Speed (benchmarks/bench.py -> results/bench.md): time to 94% with speedrun94 (on a GPU), host
# overhead of lightning fit vs a bare loop, images/s with and without SE, syncs and recompiles.
# e.g. make bench BENCH_ARGS="--data-root ~/data/cifar10-jpg" or BENCH_ARGS=--quick
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
