{% macro _llm_literal(value) -%}
  '{{ value | replace("'", "''") }}'
{%- endmacro %}
