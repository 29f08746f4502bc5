{#- Golden sets: `golden=ref('golden_tickets')` on llm_classify, llm_filter and llm_extract. -#}

{#- The golden relation of a call, checked when the model compiles: a relation (ref or source) with the
    columns `input` and `expected`. Its string form (the quoted relation name) goes in the call's plan;
    it is no part of the spec, so no part of the cache key. A command that runs no post-hook (dbt show,
    dbt compile) answers no golden set, so it does not need the relation to exist yet. -#}
{% macro _llm_golden_relation(golden, where) -%}
  {%- if adapter.type() != 'duckdb' -%}
    {{ exceptions.raise_compiler_error(where ~ ": golden sets are not available on " ~ adapter.type() ~ " yet; remove `golden=` from the macro call (score the model on dbt-duckdb).") }}
  {%- endif -%}
  {%- if golden is string or golden.identifier is not defined -%}
    {{ exceptions.raise_compiler_error(where ~ ": `golden` must be a relation with columns `input` and `expected`, such as golden=ref('golden_tickets'); got " ~ golden ~ ".") }}
  {%- endif -%}
  {%- if flags.WHICH in dbt_llm._llm_hooked_commands() -%}
    {%- set columns = adapter.get_columns_in_relation(golden) | map(attribute='name') | map('lower') | list -%}
    {%- if not columns -%}
      {{ exceptions.raise_compiler_error(where ~ ": the golden set " ~ golden ~ " does not exist; build it before the model (dbt seed, or dbt run --select it), or run both with dbt build.") }}
    {%- endif -%}
    {%- for needed in ['input', 'expected'] if needed not in columns -%}
      {{ exceptions.raise_compiler_error(where ~ ": the golden set " ~ golden ~ " has no column `" ~ needed ~ "` (its columns: " ~ columns | join(', ') ~ "); a golden set has `input` (the text) and `expected` (the expected label; true/false for llm_filter; for llm_extract the JSON of the expected fields; for multi_label a list).") }}
    {%- endfor -%}
  {%- endif -%}
  {{- return(golden | string) -}}
{%- endmacro %}

{#- In the model's post-hook, before dbt_llm_finish settles the audit: each golden set of the model's
    calls answered and scored, once per run (the plugin hands each out once, though dbt runs one
    post-hook per macro call). -#}
{% macro _llm_golden_sql() -%}
  {%- set node = "'" ~ invocation_id ~ "', '" ~ model.unique_id ~ "'" -%}
  {%- set planned = fromjson(run_query("select dbt_llm_golden_calls(" ~ node ~ ")").columns[0].values()[0]) -%}
  {%- for call in planned %}
    select count(_llm_score) from ({{ dbt_llm._llm_golden_answer_sql(call, call.golden) }}) as _llm_scored;
  {%- endfor %}
{%- endmacro %}

{#- Every input of a golden relation answered through a planned call's own SQL (_llm_resolve_sql: the
    same keys, cache and engine as the model's rows, so an input paid once is free on reruns) and scored
    by dbt_llm_golden_score, which writes llm_golden_results and counts golden_rows and golden_correct. -#}
{% macro _llm_golden_answer_sql(call, golden) -%}
  {%- set input = '_llm_g.' ~ adapter.quote('input') -%}
  select dbt_llm_golden_score(cast({{ input }} as varchar), cast(to_json(_llm_g.{{ adapter.quote('expected') }}) as varchar),
                              {{ dbt_llm._llm_resolve_sql(call, input) }}, '{{ call.handle }}') as _llm_score
  from {{ golden }} as _llm_g
{%- endmacro %}
