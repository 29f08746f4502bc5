{#- Post-hook: waits for the writer, then fails the model on failed rows or a reached budget.
    A dry run never fails the model, so a whole DAG can be estimated in one pass: a table is built
    from cached answers with NULL where a call would be needed (the next run rebuilds it); any other
    materialization is rolled back, since NULLs committed to an incremental model would never be
    revisited; a microbatch model's batches write nothing (see _llm_prepare). -#}
{% macro _llm_finish() -%}
  {{- adapter.dispatch('_llm_finish', 'dbt_llm')() -}}
{%- endmacro %}

{% macro duckdb___llm_finish() -%}
  {%- set materialized = config.get('materialized') -%}
  {%- set node = "'" ~ invocation_id ~ "', '" ~ model.unique_id ~ "'" -%}
  {%- if execute and dbt_llm._llm_dry_run() and materialized != 'table' -%}
    {%- set estimated = run_query("select dbt_llm_estimated(" ~ node ~ ")") -%}
    {%- if estimated.columns[0].values()[0] > 0 -%}
      rollback; begin transaction;
    {%- endif -%}
    {#- The last batch of a microbatch model: no batch wrote a row, but the first one created the
        table if there was none; a later run must find none, or it would skip the history. -#}
    {%- if model.batch is defined and model.batch -%}
      {%- if run_query("select dbt_llm_built_by_dry_run(" ~ node ~ ")").columns[0].values()[0] -%}
        drop table if exists {{ this }};
      {%- endif -%}
      {%- if flags.FULL_REFRESH and not invocation_args_dict.get('event_time_start') -%}
        {%- do log("dbt_llm dry run: " ~ model.unique_id ~ " was priced over the batches of an incremental run, and its table kept; to price a full refresh, add --event-time-start (its begin) and --event-time-end.", info=true) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endif -%}
  select dbt_llm_finish('{{ invocation_id }}', '{{ model.unique_id }}', '{{ materialized }}')
{%- endmacro %}

{#- Spark: merge the model's staged answers, errors and row counts into the tables (in SQL, on the
    driver), drop the staging, then fail the model on failed rows. -#}
{% macro spark___llm_finish() -%}
  {%- if execute -%}
    {%- set payload = {'invocation_id': invocation_id, 'node_id': model.unique_id} -%}
    {%- set plan = fromjson(run_query('select dbt_llm_finish(' ~ dbt_llm._llm_spark_literal(payload) ~ ')').columns[0].values()[0]) -%}
    {%- if plan.statements is defined -%}
      {#- One merge at a time: two Spark jobs appending to one table at once can lose files. -#}
      {%- set owner = dbt_llm._llm_spark_literal(invocation_id ~ ' ' ~ model.unique_id) -%}
      {%- do run_query('select dbt_llm_lock(' ~ owner ~ ')') -%}
      {%- for statement in plan.statements -%}
        {%- do run_query(statement) -%}
      {%- endfor -%}
      {%- do run_query('select dbt_llm_unlock(' ~ owner ~ ')') -%}
      {%- set failed = run_query(plan.failures_query).columns[0].values()[0] -%}
      {%- for statement in plan.drop_views -%}
        {%- do run_query(statement) -%}
      {%- endfor -%}
      {%- do run_query('select dbt_llm_discard(' ~ dbt_llm._llm_spark_literal(plan.staging) ~ ')') -%}
      {%- if failed > 0 -%}
        {{ exceptions.raise_compiler_error(plan.failed_message | replace('{failed}', failed | string)) }}
      {%- endif -%}
    {%- endif -%}
  {%- endif -%}
  select 1
{%- endmacro %}
