{#- A CTE `last_run`: the llm_audit rows of the model's most recent dbt invocation. -#}
{% macro _llm_last_run(model) -%}
{%- set audit = dbt_llm._llm_schema() ~ '.llm_audit' -%}
with model_runs as (
  select * from {{ audit }}
  where node_id like '%.' || {{ dbt_llm._llm_literal(model.identifier) }}
),
last_run as (
  select * from model_runs
  where invocation_id = (select invocation_id from model_runs order by started_at desc limit 1)
)
{%- endmacro %}
