{#- Spark stores no confidence yet: with_confidence fails the model when it compiles, rather than return a NULL confidence. -#}
{% macro _llm_spark_no_confidence(function, with_confidence) -%}
  {%- if with_confidence -%}
    {{ exceptions.raise_compiler_error("llm_" ~ function ~ ": with_confidence=true is not supported on Spark yet (the Spark tables keep no confidence); remove it, or run the model on dbt-duckdb.") }}
  {%- endif -%}
{%- endmacro %}

{#- A cascade escalates on the confidence, which Spark does not keep yet: escalate_to fails the model when it compiles. -#}
{% macro _llm_spark_no_cascade(function, escalate_to) -%}
  {%- if escalate_to is not none -%}
    {{ exceptions.raise_compiler_error("llm_" ~ function ~ ": escalate_to (a cascade) is not supported on Spark yet: it escalates on the confidence, which the Spark tables do not keep. Remove escalate_to (ask one model with model=), or run the model on dbt-duckdb.") }}
  {%- endif -%}
{%- endmacro %}
