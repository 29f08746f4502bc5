{#- Extract `fields` from a text expression. `fields` is a dict name -> 'string' | 'integer' |
    'number' | 'boolean' | 'date' | [allowed values], or a full JSON Schema object.
    Returns a STRUCT; information the text does not state is NULL. -#}
{% macro llm_extract(text, fields, model=none, instructions=none, examples=none, rows_per_request=none, golden=none) -%}
  {{- dbt_llm._llm_check_text('extract', text) -}}
  {{- adapter.dispatch('llm_extract', 'dbt_llm')(text, fields, model, instructions, examples, rows_per_request, golden) -}}
{%- endmacro %}

{% macro default__llm_extract(text, fields, model, instructions, examples, rows_per_request, golden) -%}
  {{- exceptions.raise_compiler_error("llm_extract: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml, or dbt-spark through `dbt-llm spark`.") -}}
{%- endmacro %}

{% macro duckdb__llm_extract(text, fields, model, instructions, examples, rows_per_request, golden) -%}
  {%- set call = dbt_llm._llm_prepare('extract', text, {'fields': fields, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request}, golden) -%}
  {%- if call is none -%}
    cast(null as varchar)
  {%- else -%}
    json_transform({{ dbt_llm._llm_resolve_sql(call, text) }}, {{ dbt_llm._llm_literal(call.structure) }})
  {%- endif -%}
{%- endmacro %}

{% macro spark__llm_extract(text, fields, model, instructions, examples, rows_per_request, golden) -%}
  {%- set call = dbt_llm._llm_prepare('extract', text, {'fields': fields, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request}, golden) -%}
  {%- if call is none -%}
    cast(null as string)
  {%- else -%}
    from_json({{ dbt_llm._llm_spark_answer_sql(call, text) }}, '{{ call.type }}')
  {%- endif -%}
{%- endmacro %}
