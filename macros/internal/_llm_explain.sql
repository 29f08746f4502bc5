{#- `dbt-llm explain`: run as `dbt run-operation dbt_llm._llm_explain --args '{model: ..., text: ...}'`.
    The calls _llm_prepare recorded in the model's meta when dbt parsed it are planned by the plugin as
    the model would plan them; the plugin's answer (JSON) goes to the command in a debug log line. -#}
{% macro _llm_explain(model, text=none) -%}
  {{ dbt_llm._llm_refuse_off_duckdb('dbt-llm explain') }}
  {%- set found = [] -%}
  {%- for node in graph.nodes.values() if node.resource_type == 'model' and (node.name == model or node.unique_id == model) -%}
    {%- do found.append(node) -%}
  {%- endfor -%}
  {%- if not found -%}
    {{ exceptions.raise_compiler_error("dbt-llm explain: no model is named " ~ model ~ " in this project; pass a model's name (dbt ls --resource-type model lists them).") }}
  {%- elif found | length > 1 -%}
    {{ exceptions.raise_compiler_error("dbt-llm explain: " ~ (found | length) ~ " models are named " ~ model ~ "; pass one's unique_id: " ~ (found | map(attribute='unique_id') | join(', ')) ~ ".") }}
  {%- endif -%}
  {%- set node = found[0] -%}
  {%- set calls = dbt_llm._llm_parsed_calls(node) -%}
  {%- if not calls -%}
    {{ exceptions.raise_compiler_error("dbt-llm explain: " ~ node.unique_id ~ " makes no dbt_llm call (llm_classify, llm_extract, ...).") }}
  {%- endif -%}
  {%- set plugin = run_query("select count(*) from duckdb_functions() where function_name = 'dbt_llm_explain'") -%}
  {%- if plugin.columns[0].values()[0] == 0 -%}
    {{ exceptions.raise_compiler_error("dbt-llm explain: the dbt_llm plugin is not loaded by this profile's target. Add it to your dbt-duckdb profile: plugins: [{module: dbt_llm.plugin, config: {...}}] (see the README).") }}
  {%- endif -%}
  {#- Without --text: a row's text from the model's last build, for each call whose text is a column of it. -#}
  {%- set row_texts = {} -%}
  {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) if text is none else none -%}
  {%- if relation is not none -%}
    {%- set columns = {} -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
      {%- do columns.update({column.name | lower: column.name}) -%}
    {%- endfor -%}
    {%- for call in calls if (call.text | lower) in columns -%}
      {%- set quoted = adapter.quote(columns[call.text | lower]) -%}
      {%- set found_rows = run_query("select cast(" ~ quoted ~ " as varchar) from " ~ relation ~ " where trim(cast(" ~ quoted ~ " as varchar)) <> '' limit 1") -%}
      {%- if found_rows.rows | length > 0 -%}
        {%- do row_texts.update({call.text: found_rows.columns[0].values()[0]}) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set meta = node.config.meta or {} -%}
  {%- set payload = {'node_id': node.unique_id, 'calls': calls, 'model_settings': meta.get('dbt_llm'), 'text': text,
                     'row_texts': row_texts, 'row_from': relation | string if relation is not none else none} -%}
  {%- set result = run_query('select dbt_llm_explain(' ~ dbt_llm._llm_literal(tojson(payload)) ~ ')').columns[0].values()[0] -%}
  {%- do log('dbt_llm_explain ' ~ result, info=false) -%}
{%- endmacro %}
