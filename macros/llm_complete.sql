{#- Free text for a prompt: `prompt` is a SQL expression written as a quoted string, a column or a
    concatenation: llm_complete("'Summarise in one sentence: ' || body"). Returns VARCHAR; a NULL or blank prompt
    gives NULL with no call. `max_tokens` bounds the answer (an answer cut there is kept). -#}
{% macro llm_complete(prompt, instructions=none, model=none, max_tokens=none) -%}
  {{- dbt_llm._llm_check_text('complete', prompt) -}}
  {{- adapter.dispatch('llm_complete', 'dbt_llm')(prompt, instructions, model, max_tokens) -}}
{%- endmacro %}

{% macro default__llm_complete(prompt, instructions, model, max_tokens) -%}
  {{- exceptions.raise_compiler_error("llm_complete: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml, or dbt-spark through `dbt-llm spark`.") -}}
{%- endmacro %}

{% macro duckdb__llm_complete(prompt, instructions, model, max_tokens) -%}
  {%- set call = dbt_llm._llm_prepare('complete', prompt, {'instructions': instructions, 'model': model, 'max_tokens': max_tokens}) -%}
  {%- if call is none -%}
    cast(null as varchar)
  {%- else -%}
    ({{ dbt_llm._llm_resolve_sql(call, prompt) }} ->> '$.text')
  {%- endif -%}
{%- endmacro %}

{% macro spark__llm_complete(prompt, instructions, model, max_tokens) -%}
  {%- set call = dbt_llm._llm_prepare('complete', prompt, {'instructions': instructions, 'model': model, 'max_tokens': max_tokens}) -%}
  {%- if call is none -%}
    cast(null as string)
  {%- else -%}
    get_json_object({{ dbt_llm._llm_spark_answer_sql(call, prompt) }}, '$.text')
  {%- endif -%}
{%- endmacro %}
