{#- The SQL of one call, as JSON text. Cached answers come from a join on the key (DuckDB
    decorrelates the subquery and hashes each distinct text once); only the rows it misses
    reach dbt_llm_resolve. dbt_llm_tally counts rows and hits for the audit, passing booleans
    only. Blank text is NULL and costs nothing. -#}
{% macro _llm_resolve_sql(call, text) -%}
  {%- set value = "nullif(trim(cast((" ~ text ~ ") as varchar), ' ' || chr(9) || chr(10) || chr(13)), '')" -%}
  {%- if call.truncate_at -%}
    {%- set value = "left(" ~ value ~ ", " ~ call.truncate_at ~ ")" -%}
  {%- endif -%}
  {%- set key = "sha256('" ~ call.spec_hash ~ "' || " ~ value ~ ")" -%}
  {%- set cached = "(select _llm_c.result from " ~ call.cache_table ~ " as _llm_c where _llm_c.key = " ~ key ~ ")" -%}
  (case when {{ value }} is not null and dbt_llm_tally({{ cached }} is not null, '{{ call.handle }}')
        then coalesce({{ cached }}, dbt_llm_resolve({{ key }}, {{ value }}, '{{ call.handle }}')) end)
{%- endmacro %}
