{#- An answer's SQL with its row counted for the audit: by nextval() on the call's sequence, in SQL,
    so a cached row touches no UDF; in a preview (no post-hook reads the sequence inside dbt's
    transaction) by dbt_llm_tally, a chunk at a time; a golden set's call not at all (its inputs are
    not the model's rows). -#}
{% macro _llm_counted_sql(call, answer) -%}
  {%- if call.get('rows_sequence') -%}
    (case when nextval('{{ call.rows_sequence }}') > 0 then {{ answer }} end)
  {%- elif call.get('tally') -%}
    (case when dbt_llm_tally(true, '{{ call.handle }}') then {{ answer }} end)
  {%- else -%}
    ({{ answer }})
  {%- endif -%}
{%- endmacro %}
