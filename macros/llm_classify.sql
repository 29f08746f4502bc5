{#- Classify a text expression into one of `labels` (a list, or a dict label -> description).
    Returns VARCHAR, always one of the labels; NULL or blank text gives NULL with no call. -#}
{% macro llm_classify(text, labels, model=none, instructions=none, examples=none, rows_per_request=none) -%}
  {{- dbt_llm._llm_check_text('classify', text) -}}
  {{- adapter.dispatch('llm_classify', 'dbt_llm')(text, labels, model, instructions, examples, rows_per_request) -}}
{%- endmacro %}

{% macro default__llm_classify(text, labels, model, instructions, examples, rows_per_request) -%}
  {{- exceptions.raise_compiler_error("llm_classify: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml.") -}}
{%- endmacro %}

{% macro duckdb__llm_classify(text, labels, model, instructions, examples, rows_per_request) -%}
  {%- set call = dbt_llm._llm_prepare('classify', text, {'labels': labels, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request}) -%}
  {%- if call is none -%}
    cast(null as varchar)
  {%- else -%}
    ({{ dbt_llm._llm_resolve_sql(call, text) }} ->> '$.label')
  {%- endif -%}
{%- endmacro %}
