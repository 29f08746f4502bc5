{#- A CTE `last_run`: the llm_audit rows of the model's most recent run by a command of
    _llm_hooked_commands (never a `dbt show` preview or a dry run), found by the model's unique_id. -#}
{% macro _llm_last_run(model) -%}
{%- set audit = dbt_llm._llm_schema() ~ '.llm_audit' -%}
{%- set found = namespace(unique_id=none) -%}
{%- if execute -%}
  {%- for node in graph.nodes.values() if node.resource_type in ('model', 'snapshot') and node.relation_name == (model | string) -%}
    {%- set found.unique_id = node.unique_id -%}
  {%- endfor -%}
  {%- if found.unique_id is none -%}
    {{ exceptions.raise_compiler_error("dbt_llm tests: cannot find the model of relation " ~ model ~ " in the project; attach llm_cost_below and llm_error_rate to a model (not a source or a `where` subquery).") }}
  {%- endif -%}
{%- endif -%}
with model_runs as (
  select * from {{ audit }}
  where node_id = {{ dbt_llm._llm_literal(found.unique_id or '') }}
    and coalesce(command, 'run') in (
      {%- for command in dbt_llm._llm_hooked_commands() -%}
        {{ dbt_llm._llm_literal(command) }}{{ ', ' if not loop.last }}
      {%- endfor -%})
    and status not in ('preview', 'dry_run')
),
last_run as (
  select * from model_runs
  where invocation_id = (select invocation_id from model_runs order by started_at desc limit 1)
)
{%- endmacro %}
