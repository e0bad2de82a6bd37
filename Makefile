# The two commands of the README:
#   make demo   set everything up, then run the main job on the built-in synthetic site
#   make test   set everything up, then run the linter and the test suite
# Both create .venv if it is missing. torch==2.13.0 is installed first so that pip
# never pulls the multi-gigabyte CUDA build on a CPU machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	RAY_AUTH_MODE=disabled $(VENV)/bin/sightline demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The console's browser tests drive Debian's chromium (never a downloaded browser). Where it
# cannot be installed (no root, no apt), those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) \
	    >/dev/null 2>&1 || echo "note: chromium is not installed; the console's browser tests will skip"; }

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	RAY_AUTH_MODE=disabled SIGHTLINE_CONSOLE_ARTIFACTS=test-artifacts/console $(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/sightline bench sim
	RAY_AUTH_MODE=disabled $(VENV)/bin/sightline bench serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
