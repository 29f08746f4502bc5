{#- Compile-time checks of llm_classify's labels, before anything runs. -#}
{% macro _llm_check_labels(labels) -%}
  {%- if labels is mapping -%}
    {%- set names = labels.keys() | list -%}
  {%- elif labels is iterable and labels is not string -%}
    {%- set names = labels | list -%}
  {%- else -%}
    {{ exceptions.raise_compiler_error("llm_classify: `labels` must be a list of strings or a dict label -> description; got " ~ labels) }}
  {%- endif -%}
  {%- if names | length == 0 -%}
    {{ exceptions.raise_compiler_error("llm_classify: `labels` is empty; give at least one label.") }}
  {%- endif -%}
  {%- set seen = [] -%}
  {%- for name in names -%}
    {%- if name is not string or name | trim == '' -%}
      {{ exceptions.raise_compiler_error("llm_classify: every label must be a non-empty string; got " ~ name) }}
    {%- endif -%}
    {%- if name in seen -%}
      {{ exceptions.raise_compiler_error("llm_classify: duplicate label '" ~ name ~ "'; each label must appear once.") }}
    {%- endif -%}
    {%- do seen.append(name) -%}
  {%- endfor -%}
{%- endmacro %}
