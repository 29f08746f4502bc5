{#- The embedding of a text expression, through the endpoint's /embeddings route, with the config's
    `embedding_model` unless `model` is given. Returns FLOAT[] (FLOAT[dimensions] when `dimensions` is
    given), ready for array_cosine_similarity and DuckDB's vss extension; NULL or blank text gives NULL
    with no call. Many texts go in one request; each is cached on its own. -#}
{% macro llm_embed(text, model=none, dimensions=none) -%}
  {{- dbt_llm._llm_check_text('embed', text) -}}
  {{- adapter.dispatch('llm_embed', 'dbt_llm')(text, model, dimensions) -}}
{%- endmacro %}

{% macro default__llm_embed(text, model, dimensions) -%}
  {{- exceptions.raise_compiler_error("llm_embed: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml, or dbt-spark through `dbt-llm spark`.") -}}
{%- endmacro %}

{% macro duckdb__llm_embed(text, model, dimensions) -%}
  {%- set sql_type = 'float[' ~ (dimensions if dimensions is number else '') ~ ']' -%}
  {%- set call = dbt_llm._llm_prepare('embed', text, {'model': model, 'dimensions': dimensions}) -%}
  {%- if call is none -%}
    cast(null as {{ sql_type }})
  {%- else -%}
    cast(json_transform({{ dbt_llm._llm_resolve_sql(call, text) }}, {{ dbt_llm._llm_literal(call.structure) }}).embedding as {{ sql_type }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__llm_embed(text, model, dimensions) -%}
  {%- set call = dbt_llm._llm_prepare('embed', text, {'model': model, 'dimensions': dimensions}) -%}
  {%- if call is none -%}
    cast(null as array<float>)
  {%- else -%}
    cast(from_json({{ dbt_llm._llm_spark_answer_sql(call, text) }}, '{{ call.type }}').embedding as array<float>)
  {%- endif -%}
{%- endmacro %}
