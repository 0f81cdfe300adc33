# Every target sets itself up: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed

.PHONY: help install lint typecheck test test-floor soak demo bench bench-quick bench-runner bench-lgsaver bench-cli clean

help:
	@echo "make demo        set up and run the demonstration (kill, resume, interrupt, fork)"
	@echo "make test        set up, then ruff, mypy --strict and the whole test suite"
	@echo "make test-floor  the test suite again, in .venv-floor, on the lowest versions pyproject allows"
	@echo "make soak        the long fault tests (10x iterations)"
	@echo "make bench       the benchmark suite, writes bench/RESULTS.md"
	@echo "make bench-quick a smoke run of the benchmark harness"
	@echo "make bench-runner only the runner's row (parallel branches vs sequential)"
	@echo "make bench-lgsaver only the LangGraph graphs (ForkpointSaver vs AsyncSqliteSaver)"
	@echo "make bench-cli   the CLI's cost against the library calls it makes (bench/cli.py)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests migrations bench
	$(VENV)/bin/ruff format --check src tests migrations bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest -q

# The floors come from pyproject.toml itself (tests/floors.py), so they cannot drift from it.
$(FLOOR_STAMP): pyproject.toml tests/floors.py | $(STAMP)
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PY) -m tests.floors > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/python -m pip install --quiet -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -m tests.floors --check
	$(FLOOR_VENV)/bin/pytest -q -p no:cacheprovider

soak: $(STAMP)
	FORKPOINT_SOAK=1 $(VENV)/bin/pytest -q -m soak tests

demo: $(STAMP)
	$(PY) -m forkpoint.demo

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.run
	$(PY) -m bench.pg

bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.run --quick
	$(PY) -m bench.pg --quick

bench-runner: $(STAMP)
	$(PY) -m bench.runner

bench-lgsaver: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench.lgsaver

bench-cli: $(STAMP)
	$(PY) -m bench.cli

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .mypy_cache .ruff_cache .pytest_cache dist build
