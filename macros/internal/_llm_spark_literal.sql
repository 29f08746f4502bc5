{#- A value as JSON in a Spark SQL raw string literal: r'...' keeps JSON's backslash escapes as they
    are, and a quote inside is written \u0027, which JSON reads back as a quote. -#}
{% macro _llm_spark_literal(value) -%}
  r'{{ tojson(value) | replace("'", "\\u0027") }}'
{%- endmacro %}
