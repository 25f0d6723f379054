# Quick start: `make report` (main job on the embedded digits data) and `make test`.
# Both create .venv and install snrkit with its test, docs and notebook extras on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
REPORT_DIR ?= report
LEDGER_DIR := docs/_ledger
# the docs site only; Material prints a banner about MkDocs 2.0 otherwise
export NO_MKDOCS_2_WARNING := 1

.PHONY: install test test-fast report docs docs-serve ledger bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,docs,notebooks]"
	touch $(STAMP)

install: $(STAMP)

## the whole test suite, slow statistical tests included
test: $(STAMP)
	$(BIN)/python -m pytest

## everything but the tests marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## the main job on scikit-learn's digits (embedded, nothing downloaded)
report: $(STAMP)
	$(BIN)/snrkit report --out $(REPORT_DIR)

## the documentation site (site/), warnings are errors; the test suite builds it too
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	$(BIN)/mkdocs serve

## rerun every verification (full mode) and keep its verdicts and figures for the ledger page
ledger: $(STAMP)
	rm -rf $(LEDGER_DIR).new $(LEDGER_DIR).keep
	$(BIN)/snrkit report --out $(LEDGER_DIR).new
	mkdir -p $(LEDGER_DIR).keep
	cp $(LEDGER_DIR).new/claims.csv $(LEDGER_DIR).new/snr_sweep.csv $(LEDGER_DIR).new/run.json $(LEDGER_DIR).new/*.png $(LEDGER_DIR).keep/
	rm -rf $(LEDGER_DIR) $(LEDGER_DIR).new && mv $(LEDGER_DIR).keep $(LEDGER_DIR)

## speed targets as ratios against baselines timed in the same run
bench: $(STAMP)
	$(BIN)/python bench/bench_montecarlo.py
	$(BIN)/python bench/bench_cost.py

clean:
	rm -rf $(VENV) $(REPORT_DIR) site .pytest_cache .hypothesis
