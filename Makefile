# Proof companion for arXiv 2605.17659. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEBIAN_DATA := dataset-fashion-mnist bible-kjv bible-kjv-text fortunes asterisk-core-sounds-en-g722 pocketsphinx-testdata
PYTEST_WORKERS ?= 2
SCALE ?= full
# The figures the README shows, drawn from the committed reference run (`make reference`).
DOC_FIGURES := scaling_c9 scaling_c11 scaling_c12 drift_layers remark_a2

.PHONY: help setup data verify calibrate test test-all bench gpu-check experiments experiments-quick scale figures reference lint clean

help:  ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

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
	@start=$$(date +%s); \
	$(PY) -m empirics.ledger.verify || exit $$?; \
	mid=$$(date +%s); \
	$(PY) -m pytest -q -p no:cacheprovider --hypothesis-profile=verify -n $(PYTEST_WORKERS) tests/properties || exit $$?; \
	end=$$(date +%s); \
	echo "make verify: ledger $$((mid - start)) s, verify property profile $$((end - mid)) s, total $$((end - start)) s"

calibrate: setup  ## replay >= 2000 nulls of every null statistic the ledger tests; observed vs nominal false-sign rates
	$(PY) -m empirics.ledger.calibrate --replays 2000 --no-progress

test: setup  ## run the test suites (hypothesis `dev` profile), a few minutes on 2 cores
	$(PY) -m pytest -q --hypothesis-profile=dev -n $(PYTEST_WORKERS) tests

test-all: setup  ## the suites including slow tests
	$(PY) -m pytest -q --hypothesis-profile=dev -n $(PYTEST_WORKERS) -m "not gpu" tests

bench: setup  ## benchmarks: ratios measured side by side in one run
	$(PY) -m benchmarks.montecarlo_bench
	$(PY) -m benchmarks.train_bench
	$(PY) -m benchmarks.arch_bench

gpu-check: setup  ## on a CUDA machine (<= 5 min): Monte Carlo samples/s, training tokens/s and MFU
	$(PY) -m benchmarks.gpu_check

# Both pipelines load the data their groups read before any run (Fashion-MNIST, KJV, speech: the
# Debian packages of `make data`) and stop with exit 1 naming what is missing; a group that
# completes no run stops them too, with its first run's reason.
experiments: setup  ## C6-C12 over 5 seeds (small presets, shortened runs; measured 56, 56 and 57 min end to end on 2 quiet cores), then the table and figures; needs `make data`
	$(PY) -m empirics.experiments run --scale full --jobs 2
	$(PY) -m empirics.ledger.verify --no-progress
	$(PY) paper_figures/claims_table.py --ledger results/verify/ledger.json
	$(MAKE) figures SCALE=full

experiments-quick: setup  ## the same pipeline at smoke scale (runs measured 80 s on 2 cores, then figures); needs `make data`; figures in results/figures/quick
	$(PY) -m empirics.experiments run --scale quick --jobs 1
	$(MAKE) figures SCALE=quick

scale: setup data  ## the GPT-nano scaling ladder behind C9-C12 (paper recipe, 3 sizes, 1e4-1e6 tokens, 3 seeds; resumable pieces), then its trend fits
	$(PY) -m empirics.experiments.scale run --jobs 2
	$(PY) -m empirics.experiments.scale aggregate

figures: setup  ## rebuild the figures (PNG + PDF) from results/experiments/$(SCALE) (SCALE=full|quick)
	$(MAKE) -k -C paper_figures PY=$(abspath $(PY)) SCALE=$(SCALE)

reference: setup  ## copy the ledger and the experiment JSON it read from results/ into reference/ (with provenance), re-render README.md and docs/FINDINGS.md
	$(PY) -m empirics.ledger.reference update
	$(MAKE) -k -C paper_figures PY=$(abspath $(PY)) RESULTS=$(abspath reference) OUT=$(abspath docs/figures) \
	  $(foreach f,$(DOC_FIGURES),$(abspath docs/figures)/$(f).png)
	$(PY) paper_figures/claims_table.py --docs write

lint: setup  ## ruff format check and lint
	$(PY) -m ruff format --check . && $(PY) -m ruff check .

clean:  ## remove generated results and caches (keeps .venv)
	rm -rf results .pytest_cache .hypothesis
