# Every target creates .venv itself; only Python 3.11+ and make are needed.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-moved-clock lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/imk-outreach demo --config config.yaml

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var build artifacts .pytest_cache

# The suite on a moved clock (400 days ahead, then 30 days back): no test may depend on the day it runs.
test-moved-clock: $(STAMP)
	IMK_TEST_CLOCK_SHIFT=+400d $(BIN)/python -m pytest -q
	IMK_TEST_CLOCK_SHIFT=-30d $(BIN)/python -m pytest -q
