{#- Rechecks and stale rows are built on DuckDB only for now: elsewhere, a clear error at compile time. -#}
{% macro _llm_refuse_off_duckdb(what) -%}
  {%- if execute and adapter.type() != 'duckdb' -%}
    {{ exceptions.raise_compiler_error(what ~ " runs on dbt-duckdb only for now; on " ~ adapter.type() ~ ", drop it (rechecks, stale-row counts, dbt_llm_refresh and golden sets are not built for Spark yet).") }}
  {%- endif -%}
{%- endmacro %}
