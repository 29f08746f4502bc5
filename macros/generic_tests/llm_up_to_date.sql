{#- Fails if more than `max_stale` rows of the model have a `column` answered under an older spec: rows
    whose text has no answer in llm_cache under the spec the column's call has in the model's code now
    (its labels, instructions, examples, model...). An incremental model asks only its new rows, so after
    such a change its old rows keep the old answers. Keys are recomputed in SQL: no call is made. The
    model must keep the columns its call's text reads. Also as a column test (then `column` is that column). -#}
{% test llm_up_to_date(model, column=none, max_stale=0, column_name=none) %}
{{ config(store_failures=true) }}
{{ dbt_llm._llm_refuse_off_duckdb('llm_up_to_date') }}
{%- set column = column or column_name -%}
{%- if execute and not column -%}
  {{ exceptions.raise_compiler_error("dbt_llm llm_up_to_date on " ~ model ~ ": name the column to judge: arguments: {column: category}.") }}
{%- endif -%}
{%- set call = dbt_llm._llm_current_call(model, column, 'llm_up_to_date') -%}
{%- set sql = dbt_llm._llm_key_sql(call, call.text) -%}
{%- set fix = "dbt run --select " ~ call.model_name ~ " --vars '{dbt_llm_refresh: true}'" -%}
select count(*) as stale_rows, {{ max_stale }} as max_stale,
       printf('%d row(s) of %s have a `%s` answered under an older spec of its call (no answer in llm_cache under the spec the model''s code has now), more than max_stale %d. Re-ask only them, in place: `%s`; or rebuild: `dbt run --select %s --full-refresh`',
              count(*), {{ dbt_llm._llm_literal(call.node_id) }}, {{ dbt_llm._llm_literal(column) }}, {{ max_stale }},
              {{ dbt_llm._llm_literal(fix) }}, {{ dbt_llm._llm_literal(call.model_name) }}) as problem
from {{ model }}
where {{ sql.value }} is not null
  and not exists (select 1 from {{ call.cache_table }} as _llm_c where _llm_c.key = {{ sql.key }})
having count(*) > {{ max_stale }}
{% endtest %}
