{#- Spark: the SQL of one call, as JSON text (the counterpart of _llm_resolve_sql). The cached answer
    comes from a join on the key; dbt_llm_answer runs on the executors and sends only the rows without
    one. Its last argument is a window over the text: it puts equal texts in one partition, so one
    worker process sees them all and sends each once. Blank text is NULL and costs nothing. -#}
{% macro _llm_spark_answer_sql(call, text) -%}
  {%- set value = "nullif(trim(BOTH concat(' ', chr(9), chr(10), chr(13)) FROM cast((" ~ text ~ ") as string)), '')" -%}
  {%- if call.truncate_at -%}
    {%- set value = "left(" ~ value ~ ", " ~ call.truncate_at ~ ")" -%}
  {%- endif -%}
  {%- set key = "sha2(concat('" ~ call.spec_hash ~ "', " ~ value ~ "), 256)" -%}
  dbt_llm_answer('{{ call.handle }}', {{ key }}, {{ value }},
    (select max(_llm_c.result) from {{ call.cache_table }} as _llm_c where _llm_c.key = {{ key }}),
    count(1) over (partition by {{ value }}))
{%- endmacro %}
