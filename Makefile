PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
comma := ,
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
BENCH_STAMP := $(VENV)/.installed-bench
# A recipe and its overlays, e.g. CONFIG="configs/cifar10/resnet20.yaml configs/attention/eca.yaml"
CONFIG ?= configs/cifar10/resnet20.yaml configs/attention/se.yaml
# Optional extras installed with dev, e.g. EXTRAS=ray,slurm,mlflow,wandb (what CI installs).
EXTRAS ?=

.PHONY: install train test test-all lint tensorboard notebook report bench device-check device-pack clean

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
# One pytest worker per core (pytest-xdist): the tests run one torch thread each.
PYTEST_WORKERS ?= auto
test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow and not gpu"

test-all: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

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

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,bench$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	touch $(BENCH_STAMP)

# Speed (benchmarks/bench.py -> results/bench.md): selab vs airbench94 side by side, time to 94%
# with speedrun94 (on a GPU), host overhead of lightning fit vs a bare loop, images/s with and
# without SE, syncs and recompiles. e.g. BENCH_ARGS=--quick, BENCH_ARGS="--sections airbench"
BENCH_ARGS ?=
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# Every GPU figure in one call (benchmarks/device_check.py): OUT/device_check.md and .json.
# DATA=CIFAR-10 image folders; SMOKE=1: the same code on the CPU with tiny sizes (CI runs it).
# No install step: on a device machine the image's python3 runs it with carried wheels.
OUT ?= logs/device-check
SMOKE ?=
DEVICE_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
device-check:
	$(DEVICE_PYTHON) benchmarks/device_check.py --out $(OUT) $(if $(DATA),--data-root $(DATA)) $(if $(SMOKE),--smoke)

# What a bare device machine lacks, into device/ (git-ignored; carry it): the wheels of the
# packages its image does not hold (for its Python 3.12), and DATA (CIFAR-10 image folders)
# without selab's decode cache, as one archive (60,000 small files: about 20 MB gzipped, three
# times that unpacked, against the 64 MiB a call carries).
# airbench is published as source only: built into a (pure-Python) wheel here.
DEVICE_WHEELS := jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
device-pack: install
	rm -rf device/wheels && mkdir -p device/wheels
	$(BIN)/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux2014_x86_64 -d device/wheels $(DEVICE_WHEELS)
	$(BIN)/python -m pip wheel --no-deps -w device/wheels airbench==0.1.8
	$(if $(DATA),tar -C $(DATA) --exclude=.selab-cache -czf device/cifar10-jpg.tar.gz train test)
	du -sh device

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
