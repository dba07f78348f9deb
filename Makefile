# marketloop: `make demo` runs the whole loop on the embedded default; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# test files run on this many processes (pytest-xdist; a file's tests stay on one, so its
# module fixtures are built once); TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2

.PHONY: demo test lint bench services clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/marketloop demo --out demo-out

test: $(STAMP)
	$(VENV)/bin/ruff check -q src tests bench
	bash scripts/services.sh start
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

services:
	bash scripts/services.sh start

clean:
	rm -rf $(VENV) demo-out .pytest_cache .hypothesis marketloop.duckdb
