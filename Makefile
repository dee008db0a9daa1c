# Each target bootstraps .venv on first use, so a fresh clone needs only
# Python 3.11+ and make.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

# Plotting is an optional extra, installed for the benchmark only.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --editable '.[bench]'
	touch $@

# BENCH_ARGS passes options, for example: make bench BENCH_ARGS=--quick
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/voyo-trio demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check voyo_trio tests
	$(BIN)/ruff format --check voyo_trio tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
