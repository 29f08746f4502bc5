# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false

.PHONY: install test lint pytest demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check dbt_llm tests benchmarks
	$(VENV)/bin/mypy

pytest: install
	$(PY) -m pytest -q

test: lint pytest

bench: install
	$(PY) benchmarks/cache_bench.py

clean:
	rm -rf $(VENV) example_project/target example_project/logs example_project/dbt_packages example_project/*.duckdb*
