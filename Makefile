# Proof companion for arXiv 2605.17659. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEBIAN_DATA := dataset-fashion-mnist bible-kjv bible-kjv-text asterisk-core-sounds-en-g722 pocketsphinx-testdata
PYTEST_WORKERS ?= 2

.PHONY: help setup data verify test test-all bench figures lint clean

help:  ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[torch,speech,figures,test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with torch==2.13.0 and the test extras

data:  ## install the offline Debian data packages (needs root; skipped with a note otherwise)
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA) >/dev/null; \
	else echo "not root: install these Debian packages yourself: $(DEBIAN_DATA)"; fi

verify: setup  ## check the theorems, print the claims ledger, run the `verify` hypothesis profile
	$(PY) -m empirics.verify
	$(PY) -m pytest -q -p no:cacheprovider --hypothesis-profile=verify -n $(PYTEST_WORKERS) tests/properties

test: setup  ## run the test suites (hypothesis `dev` profile), a few minutes on 2 cores
	$(PY) -m pytest -q --hypothesis-profile=dev -n $(PYTEST_WORKERS) tests

test-all: setup  ## the suites including slow tests
	$(PY) -m pytest -q --hypothesis-profile=dev -n $(PYTEST_WORKERS) -m "not gpu" tests

bench: setup  ## benchmarks: ratios measured side by side in one run
	$(PY) -m benchmarks.montecarlo_bench
	$(PY) -m benchmarks.train_bench

figures: setup  ## rebuild the figures in paper_figures/ from results/
	$(MAKE) -C paper_figures PY=$(abspath $(PY))

lint: setup  ## ruff format check and lint
	$(PY) -m ruff format --check . && $(PY) -m ruff check .

clean:  ## remove generated results and caches (keeps .venv)
	rm -rf results .pytest_cache .hypothesis
