{#- Register a macro call with the plugin (once, when the model renders) and attach the
    post-hook that settles the model. Returns none while dbt parses. -#}
{% macro _llm_prepare(function, text, args) -%}
  {%- if not execute -%}
    {#- At parse time: make the model's post-hook check failures and budget after all rows ran. -#}
    {%- do config(post_hook=["{{ dbt_llm._llm_finish() }}"]) -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set where = 'llm_' ~ function ~ '(' ~ text ~ ') in ' ~ model.unique_id -%}
  {%- set materialized = config.get('materialized') -%}
  {%- if materialized in ('view', 'ephemeral') -%}
    {{ exceptions.raise_compiler_error(where ~ ": the model is materialized as " ~ materialized ~ ", so every query of it would call the LLM again and failures could not be checked. Materialize it as table or incremental: {{ config(materialized='incremental', unique_key=...) }}.") }}
  {%- endif -%}
  {%- set payload = {'function': function, 'where': where, 'invocation_id': invocation_id, 'node_id': model.unique_id,
                     'dry_run': var('dbt_llm_dry_run', false) in (true, 'true', 'True', 1)} -%}
  {%- do payload.update(args) -%}
  {%- set plugin = run_query("select count(*) from duckdb_functions() where function_name = 'dbt_llm_prepare'") -%}
  {%- if plugin.columns[0].values()[0] == 0 -%}
    {{ exceptions.raise_compiler_error(where ~ ": the dbt_llm plugin is not loaded. Add it to your dbt-duckdb profile: plugins: [{module: dbt_llm.plugin, config: {...}}] (see the README).") }}
  {%- endif -%}
  {%- set result = run_query('select dbt_llm_prepare(' ~ dbt_llm._llm_literal(tojson(payload)) ~ ')') -%}
  {%- set call = fromjson(result.columns[0].values()[0]) -%}
  {%- if call.error -%}
    {{ exceptions.raise_compiler_error(call.error) }}
  {%- endif -%}
  {{- return(call) -}}
{%- endmacro %}
