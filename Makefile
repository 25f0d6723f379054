# Quick start: `make report` (main job on the embedded digits data) and `make test`.
# Both create .venv and install snrkit with its test extras on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
REPORT_DIR ?= report

.PHONY: install test test-fast report bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
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

## speed targets as ratios against baselines timed in the same run
bench: $(STAMP)
	$(BIN)/python bench/bench_montecarlo.py

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache .hypothesis
