{#- Compile-time check of the `text` argument: a SQL expression as a quoted string. A bare name
    (llm_classify(body, ...)) is a Jinja variable, usually undefined, not a column. -#}
{% macro _llm_check_text(function, text) -%}
  {%- if text is not defined or text is none or text is not string or text | trim == '' -%}
    {%- if text is not defined -%}
      {%- set got = 'an undefined Jinja name' -%}
    {%- elif text is string -%}
      {%- set got = 'an empty string' -%}
    {%- else -%}
      {%- set got = text | string -%}
    {%- endif -%}
    {{ exceptions.raise_compiler_error("llm_" ~ function ~ ": `text` must be a SQL expression written as a quoted string, for example llm_" ~ function ~ "('body', ...) or llm_" ~ function ~ "('title || body', ...); got " ~ got ~ ". A bare name without quotes is a Jinja variable, not a column: put the column name in quotes.") }}
  {%- endif -%}
{%- endmacro %}
