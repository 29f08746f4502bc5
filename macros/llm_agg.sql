{#- One answer over a whole group of rows: use it with `group by` (or over a whole table).
    llm_agg('review', 'What do customers complain about? Three bullet points.'). Returns VARCHAR; NULL and
    blank texts are left out, and a group with none gets NULL with no call. The group's texts, ordered by
    their hash, are cut into leaves of at most max_input_chars characters, each leaf answered with the task,
    and the partial answers merged a few at a time up to one answer: each leaf and merge is cached, so a
    group that gained a few texts asks only the leaves they fall in and the merges above them. -#}
{% macro llm_agg(text, task, model=none, instructions=none, max_tokens=none) -%}
  {{- dbt_llm._llm_check_text('agg', text) -}}
  {{- adapter.dispatch('llm_agg', 'dbt_llm')(text, task, model, instructions, max_tokens) -}}
{%- endmacro %}

{% macro default__llm_agg(text, task, model, instructions, max_tokens) -%}
  {{- exceptions.raise_compiler_error("llm_agg: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml.") -}}
{%- endmacro %}

{% macro duckdb__llm_agg(text, task, model, instructions, max_tokens) -%}
  {%- set call = dbt_llm._llm_prepare('agg', text, {'task': task, 'model': model, 'instructions': instructions, 'max_tokens': max_tokens}) -%}
  {%- if call is none -%}
    cast(null as varchar)
  {%- else -%}
    {#- Texts as a row's are sent (trimmed, NULL when blank, cut at truncate_at); the UDF orders them by hash. -#}
    {%- set value = dbt_llm._llm_key_sql(call, text).value -%}
    (dbt_llm_agg(list({{ value }}) filter (where {{ value }} is not null), '{{ call.handle }}') ->> '$.text')
  {%- endif -%}
{%- endmacro %}

{#- Spark: not built yet; refused when dbt parses the model, before any query. -#}
{% macro spark__llm_agg(text, task, model, instructions, max_tokens) -%}
  {{- exceptions.raise_compiler_error("llm_agg(" ~ text ~ "): llm_agg is not supported on Spark yet: its tree of cached partial answers is built on dbt-duckdb only. Run the model on dbt-duckdb, or aggregate the texts first (concat_ws over collect_list) and call llm_complete on the result.") -}}
{%- endmacro %}
