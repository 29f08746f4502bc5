{#- The qualified schema of the llm_* tables, as the plugin configured it. -#}
{% macro _llm_schema() -%}
  {%- if not execute -%}{{ return('dbt_llm') }}{%- endif -%}
  {{- return(adapter.dispatch('_llm_schema', 'dbt_llm')()) -}}
{%- endmacro %}

{% macro duckdb___llm_schema() -%}
  {{- return(run_query('select dbt_llm_schema()').columns[0].values()[0]) -}}
{%- endmacro %}

{#- Spark: the `schema` key of the dbt var `dbt_llm`. -#}
{% macro spark___llm_schema() -%}
  {%- set settings = var('dbt_llm', {}) or {} -%}
  {{- return('`' ~ (settings.get('schema') or 'dbt_llm') ~ '`') -}}
{%- endmacro %}
