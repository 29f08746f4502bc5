{#- The SQL of one call, as JSON text. Cached answers come from a join on the key (DuckDB
    decorrelates the subquery and hashes each distinct text once). Inside it, dbt_llm_submit
    sees the distinct texts the join missed, all before the first row is resolved, and queues
    their requests; dbt_llm_resolve then gets only the missed rows of each chunk and waits for
    their answers, while the queue fills the free slots. dbt_llm_tally counts rows for the audit, passing booleans only.
    Blank text is NULL and costs nothing. With with_confidence the JSON is {<name>: answer, confidence:
    ...}, a cached row's confidence read from its llm_cache column (dbt_llm_resolve answers the same form). -#}
{% macro _llm_resolve_sql(call, text) -%}
  {%- set value = "nullif(trim(cast((" ~ text ~ ") as varchar), ' ' || chr(9) || chr(10) || chr(13)), '')" -%}
  {%- if call.truncate_at -%}
    {%- set value = "left(" ~ value ~ ", " ~ call.truncate_at ~ ")" -%}
  {%- endif -%}
  {%- set key = "sha256('" ~ call.spec_hash ~ "' || " ~ value ~ ")" -%}
  {%- set answer = "_llm_c.result" -%}
  {%- if call.confidence -%}
    {%- set answer = "json_object('" ~ call.confidence.name ~ "', _llm_c.result -> '$." ~ call.confidence.key ~ "', 'confidence', _llm_c.confidence)" -%}
  {%- endif -%}
  {%- set cached = "(select coalesce(max(" ~ answer ~ "), dbt_llm_submit(" ~ key ~ ", " ~ value ~ ", '" ~ call.handle
      ~ "')) from " ~ call.cache_table ~ " as _llm_c where _llm_c.key = " ~ key ~ ")" -%}
  (case when dbt_llm_tally({{ value }} is not null, '{{ call.handle }}')
        then coalesce({{ cached }}, dbt_llm_resolve({{ key }}, {{ value }}, '{{ call.handle }}')) end)
{%- endmacro %}
