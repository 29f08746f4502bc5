{#- The model node of a test's `model` relation, found by relation_name in the graph. -#}
{% macro _llm_node_of(model, test) -%}
  {%- for node in graph.nodes.values() if node.resource_type in ('model', 'snapshot') and node.relation_name == (model | string) -%}
    {{- return(node) -}}
  {%- endfor -%}
  {{ exceptions.raise_compiler_error("dbt_llm " ~ test ~ ": cannot find the model of relation " ~ model ~ " in the project; attach it to a model (not a source or a `where` subquery).") }}
{%- endmacro %}

{#- The call that fills `column` of the test's model, with the spec the model's code gives it now:
    _llm_prepare recorded each call in the model's meta when dbt parsed it, and the plugin plans the one
    named by the column as the model would (nothing is registered or sent). -#}
{% macro _llm_current_call(model, column, test) -%}
  {%- if not execute -%}
    {{- return({'spec_hash': '', 'text': 'null', 'truncate_at': none, 'cache_table': 'llm_cache', 'node_id': ''}) -}}
  {%- endif -%}
  {{- return(dbt_llm._llm_spec_of_column(dbt_llm._llm_node_of(model, test), column)) -}}
{%- endmacro %}

{#- The calls _llm_prepare recorded in a model node's meta when dbt parsed it, in code order. -#}
{% macro _llm_parsed_calls(node) -%}
  {%- set calls = [] -%}
  {%- for key, entry in (node.config.meta or {}).items() if key.startswith('dbt_llm_call_') -%}
    {%- do calls.append(entry) -%}
  {%- endfor -%}
  {{- return(calls) -}}
{%- endmacro %}

{% macro _llm_spec_of_column(node, column) -%}
  {%- set meta = node.config.meta or {} -%}
  {%- set payload = {'node_id': node.unique_id, 'column': column, 'raw_code': node.raw_code, 'calls': dbt_llm._llm_parsed_calls(node),
                     'model_settings': meta.get('dbt_llm')} -%}
  {%- set call = fromjson(run_query('select dbt_llm_current_spec(' ~ dbt_llm._llm_literal(tojson(payload)) ~ ')').columns[0].values()[0]) -%}
  {%- if call.error -%}
    {{ exceptions.raise_compiler_error(call.error) }}
  {%- endif -%}
  {%- do call.update({'node_id': node.unique_id, 'model_name': node.name}) -%}
  {{- return(call) -}}
{%- endmacro %}
