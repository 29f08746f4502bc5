{#- The dbt commands whose runs are settled by the model's post-hook (_llm_finish) and judged by the
    shipped tests; this is the one list. `snapshot` runs a snapshot's post-hook as `run` does a model's.
    Any other command that runs a model's SQL (`dbt show`, `dbt compile` with an introspective query)
    is a preview: answered realtime, recorded with status `preview`, never judged. -#}
{% macro _llm_hooked_commands() -%}
  {{- return(['run', 'build', 'retry', 'snapshot']) -}}
{%- endmacro %}
