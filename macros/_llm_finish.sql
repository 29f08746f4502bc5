{#- Post-hook: waits for the writer, then fails the model on failed rows or a reached budget. -#}
{% macro _llm_finish() -%}
  select dbt_llm_finish('{{ invocation_id }}', '{{ model.unique_id }}')
{%- endmacro %}
