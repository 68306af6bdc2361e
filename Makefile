# `make demo` and `make test` work on a fresh machine: they create .venv and install what is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MNIST for tests and benchmarks: the shared copy beside the project, when there is one.
export PSEUDOLABEL_DATA ?= $(abspath ../shared/data)

.PHONY: demo test reliability install browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch's CPU build first: an unpinned torch would pull several GB of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
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
