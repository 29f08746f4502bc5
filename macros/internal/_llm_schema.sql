{#- The qualified schema of the llm_* tables, as the plugin configured it. -#}
{% macro _llm_schema() -%}
  {%- if not execute -%}{{ return('dbt_llm') }}{%- endif -%}
  {{- return(run_query('select dbt_llm_schema()').columns[0].values()[0]) -}}
{%- endmacro %}
