{#- One row per element of an array column, in a select list. -#}
{% macro _llm_unnest(column) -%}
  {{- adapter.dispatch('_llm_unnest', 'dbt_llm')(column) -}}
{%- endmacro %}

{% macro default___llm_unnest(column) -%}
  unnest({{ column }})
{%- endmacro %}

{% macro spark___llm_unnest(column) -%}
  explode({{ column }})
{%- endmacro %}
