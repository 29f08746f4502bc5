{#- The SQL of one call, as JSON text. A cached row costs a hash join and nothing more: DuckDB
    decorrelates the subquery and runs it once per distinct text, so the normalised text and its key
    are computed there, never per row, and no UDF sees the row. Inside it, dbt_llm_submit sees the
    distinct texts the join missed (with the text as the row has it), all before the first row is
    resolved, and queues their requests; dbt_llm_resolve then gets only the rows the join did not
    answer, by their text as the row has it (written once here: a repeated expression would be
    computed for every row), and waits for their answers while the queue fills the free slots.
    Rows are counted for the audit in SQL, by nextval() on the call's own sequence (_llm_counted_sql);
    blank texts reach dbt_llm_resolve, which answers NULL and takes them off.
    With a recheck, dbt_llm_sample sees each distinct cached text with its answer and returns the
    answer. With with_confidence the JSON is {<name>: answer, confidence: ...}, a cached row's
    confidence read from its llm_cache column (dbt_llm_resolve answers the same form). -#}
{% macro _llm_resolve_sql(call, text) -%}
  {%- set sql = dbt_llm._llm_key_sql(call, text) -%}
  {%- set value, key, raw = sql.value, sql.key, sql.raw -%}
  {%- set result = "max(_llm_c._llm_result)" -%}
  {%- set hit = result -%}
  {%- if call.confidence -%}
    {%- set hit = "max(json_object('" ~ call.confidence.name ~ "', _llm_c._llm_result -> '$." ~ call.confidence.key ~ "', 'confidence', _llm_c._llm_confidence))" -%}
  {%- endif -%}
  {%- if call.recheck -%}
    {%- set hit = "(case when dbt_llm_sample(" ~ key ~ ", " ~ value ~ ", " ~ result ~ ", '" ~ call.handle ~ "') is not null then " ~ hit ~ " end)" -%}
  {%- endif -%}
  {#- Only the columns it needs, under names of its own: a misspelt column in `text` gets DuckDB's
      "did you mean" list of the model's columns, not of llm_cache's. -#}
  {%- set cached = "(select coalesce(" ~ hit ~ ", dbt_llm_submit(" ~ key ~ ", " ~ value ~ ", " ~ raw ~ ", '" ~ call.handle
      ~ "')) from (select key as _llm_key, result as _llm_result, confidence as _llm_confidence from "
      ~ call.cache_table ~ ") as _llm_c where _llm_c._llm_key = " ~ key ~ ")" -%}
  {{- dbt_llm._llm_counted_sql(call, "coalesce(" ~ cached ~ ", dbt_llm_resolve(" ~ raw ~ ", '" ~ call.handle ~ "'))") -}}
{%- endmacro %}

{#- A row's text as it is sent (NULL when blank, cut at truncate_at) and its cache key, as SQL: the
    one place they are computed, for the call and for the tests that recompute keys (llm_up_to_date);
    `raw` is the text as the row has it, by which dbt_llm_resolve finds what dbt_llm_submit was told. -#}
{% macro _llm_key_sql(call, text) -%}
  {%- set raw = "cast((" ~ text ~ ") as varchar)" -%}
  {%- set value = "nullif(trim(" ~ raw ~ ", ' ' || chr(9) || chr(10) || chr(13)), '')" -%}
  {%- if call.truncate_at -%}
    {%- set value = "left(" ~ value ~ ", " ~ call.truncate_at ~ ")" -%}
  {%- endif -%}
  {{- return({'value': value, 'key': "sha256('" ~ call.spec_hash ~ "' || " ~ value ~ ")", 'raw': raw}) -}}
{%- endmacro %}
