{#- Post-hook: waits for the writer, then fails the model on failed rows or a reached budget.
    A dry run never fails the model, so a whole DAG can be estimated in one pass: a table is built
    from cached answers with NULL where a call would be needed (the next run rebuilds it); any other
    materialization is rolled back, since NULLs committed to an incremental model would never be
    revisited. -#}
{% macro _llm_finish() -%}
  {%- set materialized = config.get('materialized') -%}
  {%- if execute and dbt_llm._llm_dry_run() and materialized != 'table' -%}
    {%- set estimated = run_query("select dbt_llm_estimated('" ~ invocation_id ~ "', '" ~ model.unique_id ~ "')") -%}
    {%- if estimated.columns[0].values()[0] > 0 -%}
      rollback; begin transaction;
    {%- endif -%}
  {%- endif -%}
  select dbt_llm_finish('{{ invocation_id }}', '{{ model.unique_id }}', '{{ materialized }}')
{%- endmacro %}
