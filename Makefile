# vkit: `make run` sets up .venv and runs the main job; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: venv install install-dev run test bench clean chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first, pinned to the CPU build on disk, so nothing pulls a CUDA build.
$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(VENV)/bin/vkit run medical-diagnosis

# Two pytest-xdist workers, each taking whole files (module fixtures such as a trained tiny run are built once):
# 1663 tests in 538 s on 2 cores (one process: 913 s for the 1387 tests of the round before).
test: install-dev chromium
	$(PY) -m pytest -q -n 2 --dist loadfile

# Headless Chromium (Debian package) for the report's browser test; without root or apt the test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "note: chromium not installed (apt-get install -y chromium); the report's browser test will skip"

# Runs the commands docs/benchmarks.md names and writes each one's output there (benchmarks/to_docs.py).
bench: install-dev
	$(PY) benchmarks/to_docs.py

clean:
	rm -rf $(VENV) build *.egg-info
