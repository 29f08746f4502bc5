{#- Spark stores no confidence yet: with_confidence fails the model when it compiles, rather than return a NULL confidence. -#}
{% macro _llm_spark_no_confidence(function, with_confidence) -%}
  {%- if with_confidence -%}
    {{ exceptions.raise_compiler_error("llm_" ~ function ~ ": with_confidence=true is not supported on Spark yet (the Spark tables keep no confidence); remove it, or run the model on dbt-duckdb.") }}
  {%- endif -%}
{%- endmacro %}
