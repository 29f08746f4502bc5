{#- Spark: insert staged batch jobs into llm_batch_jobs and llm_batch_job_keys, under the merge lock
    (two jobs appending to one table at once can lose files). -#}
{% macro _llm_spark_record_jobs(statements) -%}
  {%- if statements -%}
    {%- set owner = dbt_llm._llm_spark_literal(invocation_id ~ ' ' ~ model.unique_id ~ ' jobs') -%}
    {%- do run_query('select dbt_llm_lock(' ~ owner ~ ')') -%}
    {%- for statement in statements -%}
      {%- do run_query(statement) -%}
    {%- endfor -%}
    {%- do run_query('select dbt_llm_unlock(' ~ owner ~ ')') -%}
  {%- endif -%}
{%- endmacro %}
