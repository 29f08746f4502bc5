{#- Compile-time checks of llm_extract's fields (a full JSON Schema is checked when prepared). -#}
{% macro _llm_check_fields(fields) -%}
  {%- if fields is not mapping or fields | length == 0 -%}
    {{ exceptions.raise_compiler_error("llm_extract: `fields` must be a non-empty dict of name -> type, or a JSON Schema object; got " ~ fields) }}
  {%- endif -%}
  {%- if not (fields.get('type') == 'object' and 'properties' in fields) -%}
    {%- set types = ['string', 'integer', 'number', 'boolean', 'date'] -%}
    {%- for name, kind in fields.items() -%}
      {%- if kind is string and kind not in types -%}
        {{ exceptions.raise_compiler_error("llm_extract: field `" ~ name ~ "` has unknown type '" ~ kind ~ "'; use one of " ~ types | join(', ') ~ ", a list of allowed values, or a JSON Schema object.") }}
      {%- elif kind is not string and (kind is mapping or kind is not iterable or kind | length == 0) -%}
        {{ exceptions.raise_compiler_error("llm_extract: field `" ~ name ~ "` must be a type name or a non-empty list of allowed values; got " ~ kind) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}
