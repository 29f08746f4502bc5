{#- Post-hook: waits for the writer, then fails the model on failed rows or a reached budget.
    A dry run never fails the model, so a whole DAG can be estimated in one pass: a table is built
    from cached answers with NULL where a call would be needed (the next run rebuilds it); an
    incremental model that exists is rolled back, since NULLs committed to it would never be
    revisited (a microbatch model's batches write nothing: see _llm_prepare); one that did not exist
    is kept for the models downstream and dropped at the end of the run (_llm_drop_dry_run_tables). -#}
{% macro _llm_finish() -%}
  {{- adapter.dispatch('_llm_finish', 'dbt_llm')() -}}
{%- endmacro %}

{% macro duckdb___llm_finish() -%}
  {%- set materialized = config.get('materialized') -%}
  {%- set node = "'" ~ invocation_id ~ "', '" ~ model.unique_id ~ "'" -%}
  {#- The rows counted in SQL (_llm_counted_sql), read here on dbt's connection, before any rollback: a
      sequence made in the transaction dbt opened while compiling is seen by no other connection yet. -#}
  {%- if execute -%}
    select count(dbt_llm_rows_counted(sequence_name, last_value)) from duckdb_sequences() where starts_with(sequence_name, 'llm_rows_');
  {%- endif -%}
  {%- if execute and dbt_llm._llm_dry_run() and materialized != 'table' -%}
    {%- set created = run_query("select dbt_llm_built_by_dry_run(" ~ node ~ ")").columns[0].values()[0] -%}
    {%- set estimated = run_query("select dbt_llm_estimated(" ~ node ~ ")").columns[0].values()[0] > 0 -%}
    {#- A microbatch model's later batches wrote nothing, so what its first created is never whole. -#}
    {%- if created and (estimated or (model.batch is defined and model.batch)) -%}
      {#- It did not exist: kept with NULLs for the models downstream, dropped at the end of the run. -#}
      {%- set schema = run_query("select dbt_llm_schema()").columns[0].values()[0] -%}
      insert or replace into {{ schema }}.llm_dry_run_tables values ({{ dbt_llm._llm_literal(this | string) }}, '{{ model.unique_id }}', '{{ invocation_id }}', now());
    {%- elif estimated -%}
      rollback; begin transaction;
    {%- endif -%}
  {%- endif -%}
  {%- if execute and dbt_llm._llm_refreshing(materialized) -%}
    {{ dbt_llm._llm_refresh_sql() }}
  {%- endif -%}
  {%- if execute -%}
    {{ dbt_llm._llm_golden_sql() }}
  {%- endif -%}
  select dbt_llm_finish('{{ invocation_id }}', '{{ model.unique_id }}', '{{ materialized }}')
{%- endmacro %}

{#- Spark: merge the model's staged answers, errors and row counts into the tables (in SQL, on the
    driver), drop the staging, then fail the model on failed rows or texts max_cost_usd left unsent. -#}
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
      {%- if plan.budget_message -%}
        {{ exceptions.raise_compiler_error(plan.budget_message) }}
      {%- endif -%}
    {%- endif -%}
  {%- endif -%}
  select 1
{%- endmacro %}
