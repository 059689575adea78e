# workbench — set-up and test entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint typecheck bench clean dev-up dev-down strip-notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## demo: set up, then run the clickstream job on the in-memory driver and print the results
demo: $(STAMP)
	$(PY) examples/clickstream.py

## test: set up, then run the whole suite (conformance oracle included: needs Java 17 + Maven)
test: $(STAMP)
	WORKBENCH_DEV_INSTALL=1 $(PY) -m pytest $(PYTEST_ARGS)

## dev-up / dev-down: local Kafka, PostgreSQL and a Schema Registry (also: .venv/bin/workbench dev up)
dev-up: $(STAMP)
	$(VENV)/bin/workbench dev up

dev-down: $(STAMP)
	$(VENV)/bin/workbench dev down

## test-fast: unit tests only (no Java oracle, no services)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not conformance and not kafka and not postgres and not registry and not notebook and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check workbench tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench: every benchmark, one table (memory; kafka/postgresql when `workbench dev status` shows
## them; git). Numbers, except that a result differing from its reference fails.
## Quick look: make bench BENCH_ARGS="--events 100000 --repeat 1"
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

## strip-notebooks: remove outputs before committing notebooks
strip-notebooks: $(STAMP)
	$(VENV)/bin/nbstripout notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/conformance/.build
