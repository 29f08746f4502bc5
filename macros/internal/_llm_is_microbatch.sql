{#- Whether the model being parsed is a microbatch model. At parse time config.get() answers '' for
    every key, so the setting is looked for in the model's code (a config() call) and in the configs
    dbt gathered from the project and the yml files. -#}
{% macro _llm_is_microbatch() -%}
  {%- set configured = (model.config or {}).get('incremental_strategy') if model.config is mapping else none -%}
  {%- set in_code = modules.re.search("incremental_strategy\\s*=\\s*['\"]microbatch['\"]", model.raw_code or '') -%}
  {{- return(configured == 'microbatch' or in_code is not none) -}}
{%- endmacro %}
