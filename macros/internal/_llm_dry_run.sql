{#- Whether this invocation is a dry run: `--vars '{dbt_llm_dry_run: true}'`. -#}
{% macro _llm_dry_run() -%}
  {{- return(var('dbt_llm_dry_run', false) in (true, 'true', 'True', 1)) -}}
{%- endmacro %}
