{#- Fails unless the column is a STRUCT with exactly the `fields` given to llm_extract, typed as promised. -#}
{% test llm_fields_typed(model, column_name, fields) %}
{%- if adapter.type() != 'duckdb' -%}
  {{ exceptions.raise_compiler_error("llm_fields_typed reads DuckDB's information_schema and runs on dbt-duckdb only; on " ~ adapter.type() ~ ", check the column with a test of your own (or drop this one).") }}
{%- endif -%}
{%- set types = {'string': 'VARCHAR', 'integer': 'BIGINT', 'number': 'DOUBLE', 'boolean': 'BOOLEAN', 'date': 'DATE'} -%}
{%- set parts = [] -%}
{%- for name, kind in fields.items() -%}
  {%- do parts.append(name ~ ' ' ~ (types[kind] if kind is string else 'VARCHAR')) -%}
{%- endfor -%}
{%- set expected = 'STRUCT(' ~ parts | join(', ') ~ ')' -%}
select data_type as actual, {{ dbt_llm._llm_literal(expected) }} as expected
from information_schema.columns
where table_schema = {{ dbt_llm._llm_literal(model.schema) }}
  and table_name = {{ dbt_llm._llm_literal(model.identifier) }}
  and column_name = {{ dbt_llm._llm_literal(column_name) }}
  and data_type <> {{ dbt_llm._llm_literal(expected) }}
union all
select 'missing column' as actual, {{ dbt_llm._llm_literal(expected) }} as expected
where not exists (
  select 1 from information_schema.columns
  where table_schema = {{ dbt_llm._llm_literal(model.schema) }}
    and table_name = {{ dbt_llm._llm_literal(model.identifier) }}
    and column_name = {{ dbt_llm._llm_literal(column_name) }})
{% endtest %}
