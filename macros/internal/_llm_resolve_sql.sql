{#- The SQL of one call, as JSON text. Cached answers come from a join on the key (DuckDB
    decorrelates the subquery and hashes each distinct text once). Inside it, dbt_llm_submit
    sees the distinct texts the join missed, all before the first row is resolved, and queues
    their requests; dbt_llm_resolve then gets only the missed rows of each chunk and waits for
    their answers, while the queue fills the free slots. dbt_llm_tally counts rows for the audit, passing booleans only.
    Blank text is NULL and costs nothing. With a recheck, dbt_llm_sample sees each distinct cached
    text with its answer and returns the answer. With with_confidence the JSON is {<name>: answer,
    confidence: ...}, a cached row's confidence read from its llm_cache column (dbt_llm_resolve
    answers the same form). -#}
{% macro _llm_resolve_sql(call, text) -%}
  {%- set sql = dbt_llm._llm_key_sql(call, text) -%}
  {%- set value, key = sql.value, sql.key -%}
  {%- set raw = "max(_llm_c._llm_result)" -%}
  {%- set hit = raw -%}
  {%- if call.confidence -%}
    {%- set hit = "max(json_object('" ~ call.confidence.name ~ "', _llm_c._llm_result -> '$." ~ call.confidence.key ~ "', 'confidence', _llm_c._llm_confidence))" -%}
  {%- endif -%}
  {%- if call.recheck -%}
    {%- set hit = "(case when dbt_llm_sample(" ~ key ~ ", " ~ value ~ ", " ~ raw ~ ", '" ~ call.handle ~ "') is not null then " ~ hit ~ " end)" -%}
  {%- endif -%}
  {#- Only the columns it needs, under names of its own: a misspelt column in `text` gets DuckDB's
      "did you mean" list of the model's columns, not of llm_cache's. -#}
  {%- set cached = "(select coalesce(" ~ hit ~ ", dbt_llm_submit(" ~ key ~ ", " ~ value ~ ", '" ~ call.handle
      ~ "')) from (select key as _llm_key, result as _llm_result, confidence as _llm_confidence from "
      ~ call.cache_table ~ ") as _llm_c where _llm_c._llm_key = " ~ key ~ ")" -%}
  (case when dbt_llm_tally({{ value }} is not null, '{{ call.handle }}')
        then coalesce({{ cached }}, dbt_llm_resolve({{ key }}, {{ value }}, '{{ call.handle }}')) end)
{%- endmacro %}

{#- A row's text as it is sent (NULL when blank, cut at truncate_at) and its cache key, as SQL: the
    one place they are computed, for the call and for the tests that recompute keys (llm_up_to_date). -#}
{% macro _llm_key_sql(call, text) -%}
  {%- set value = "nullif(trim(cast((" ~ text ~ ") as varchar), ' ' || chr(9) || chr(10) || chr(13)), '')" -%}
  {%- if call.truncate_at -%}
    {%- set value = "left(" ~ value ~ ", " ~ call.truncate_at ~ ")" -%}
  {%- endif -%}
  {{- return({'value': value, 'key': "sha256('" ~ call.spec_hash ~ "' || " ~ value ~ ")"}) -}}
{%- endmacro %}
