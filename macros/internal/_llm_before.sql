{#- Pre-hook: nothing on DuckDB (its UDFs see every miss before the first row is answered). On Spark, a
    model's calls in batch mode or a dry run are answered here, before its statement: the model's own
    SQL runs once with those calls renamed, which stages each distinct uncached text and sends nothing;
    then the texts are priced (a dry run) or sent as batch jobs, recorded in llm_batch_jobs, and waited
    for up to batch_timeout (spark/nightly.py). The statement then finds every answer staged. -#}
{% macro _llm_before() -%}
  {{- adapter.dispatch('_llm_before', 'dbt_llm')() -}}
{%- endmacro %}

{% macro default___llm_before() -%}
{%- endmacro %}

{% macro spark___llm_before() -%}
  {%- if execute and flags.WHICH in dbt_llm._llm_hooked_commands() -%}
    {%- set payload = {'invocation_id': invocation_id, 'node_id': model.unique_id} -%}
    {%- set plan = fromjson(run_query('select dbt_llm_before(' ~ dbt_llm._llm_spark_literal(payload) ~ ')').columns[0].values()[0]) -%}
    {%- if plan.handles -%}
      {%- set renamed = namespace(sql=model.compiled_code) -%}
      {%- for handle in plan.handles -%}
        {%- set renamed.sql = renamed.sql | replace("'" ~ handle ~ "'", "'" ~ plan.prefix ~ handle ~ "'") -%}
      {%- endfor -%}
      {#- to_json(struct(*)) reads every column, so no call is pruned away. -#}
      {%- do run_query('select count(to_json(struct(*))) from (' ~ renamed.sql ~ ') _dbt_llm_wanted') -%}
      {%- set calls = {'handles': plan.handles} -%}
      {%- set sent = fromjson(run_query('select dbt_llm_submit_jobs(' ~ dbt_llm._llm_spark_literal(calls) ~ ')').columns[0].values()[0]) -%}
      {%- do dbt_llm._llm_spark_record_jobs(sent.statements) -%}
      {%- for message in sent.messages -%}
        {%- do log(message, info=true) -%}
      {%- endfor -%}
      {%- set collected = fromjson(run_query('select dbt_llm_collect_jobs(' ~ dbt_llm._llm_spark_literal(calls) ~ ')').columns[0].values()[0]) -%}
      {%- do dbt_llm._llm_spark_record_jobs(collected.statements) -%}
      {%- if collected.collected -%}
        {%- do run_query('select dbt_llm_discard_jobs(' ~ dbt_llm._llm_spark_literal(collected.collected) ~ ')') -%}
      {%- endif -%}
      {%- if collected.error -%}
        {{ exceptions.raise_compiler_error(collected.error) }}
      {%- endif -%}
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}
