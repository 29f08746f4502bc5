{#- The SQL of one call: cached answers come from a join on the key; only misses reach
    the Python function. Blank text is NULL. Result: the answer as JSON text. -#}
{% macro _llm_resolve_sql(call, text) -%}
  {%- set value = "nullif(trim(cast((" ~ text ~ ") as varchar), ' ' || chr(9) || chr(10) || chr(13)), '')" -%}
  {%- set key = "sha256('" ~ call.spec_hash ~ "' || " ~ value ~ ")" -%}
  dbt_llm_resolve(
    (select _llm_c.result from {{ call.cache_table }} as _llm_c where _llm_c.key = {{ key }}),
    {{ key }},
    {{ value }},
    '{{ call.handle }}'
  )
{%- endmacro %}
