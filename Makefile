# `make demo` and `make test` work on a fresh machine: they create .venv and install what is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# x86_64: torch 2.14.1 + torchvision 0.29.1 (on this workplace's disk); aarch64: the 2.9.1 CPU pair.
TORCH_PAIR ?= $(if $(filter aarch64 arm64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
# MNIST for tests and benchmarks: the shared copy beside the project, when there is one.
export PSEUDOLABEL_DATA ?= $(abspath ../shared/data)

.PHONY: demo test reliability install browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision first, a matching pair (an unpinned torch pulls several GB of CUDA packages;
	# PyPI's torchvision does not import beside the torch 2.13.0 CPU file, see docs/architecture.md).
	$(PY) -m pip install --quiet $(TORCH_PAIR)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and no root: browser tests will be skipped (apt-get install chromium)"; fi; }

demo: $(STAMP)
	$(VENV)/bin/pseudolabel demo

test: $(STAMP) browser
	$(PY) -m pytest -q

# The reliability suite alone (docs/reliability.md); `make test` includes it.
reliability: $(STAMP) browser
	$(PY) -m pytest -q -m reliability

bench: $(STAMP)
	$(PY) bench/bench_selftrain.py

clean:
	rm -rf $(VENV) runs .pytest_cache
