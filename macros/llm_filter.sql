{#- A yes/no judgement of a text expression: `question` is asked of each text ("Does the customer ask
    for a refund?"). Returns BOOLEAN; NULL or blank text gives NULL with no call.
    With with_confidence=true: STRUCT(value BOOLEAN, confidence DOUBLE), the confidence being the
    probability the model gave its answer among true and false (NULL where the provider gave no logprobs).
    With escalate_to= and escalate_below=: a cascade, as for llm_classify. -#}
{% macro llm_filter(text, question, model=none, instructions=none, examples=none, rows_per_request=none, with_confidence=false, golden=none, escalate_to=none, escalate_below=none, cascade_target=none) -%}
  {{- dbt_llm._llm_check_text('filter', text) -}}
  {{- adapter.dispatch('llm_filter', 'dbt_llm')(text, question, model, instructions, examples, rows_per_request, with_confidence, golden, escalate_to, escalate_below, cascade_target) -}}
{%- endmacro %}

{% macro default__llm_filter(text, question, model, instructions, examples, rows_per_request, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {{- exceptions.raise_compiler_error("llm_filter: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml, or dbt-spark through `dbt-llm spark`.") -}}
{%- endmacro %}

{% macro duckdb__llm_filter(text, question, model, instructions, examples, rows_per_request, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {%- set call = dbt_llm._llm_prepare('filter', text, {'question': question, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request, 'with_confidence': with_confidence}, golden, dbt_llm._llm_cascade_args(escalate_to, escalate_below, cascade_target)) -%}
  {%- if call is none -%}
    cast(null as {{ 'struct(value boolean, confidence double)' if with_confidence else 'boolean' }})
  {%- elif with_confidence -%}
    json_transform({{ dbt_llm._llm_answer_sql(call, text) }}, '{"value": "BOOLEAN", "confidence": "DOUBLE"}')
  {%- else -%}
    ({{ dbt_llm._llm_answer_sql(call, text) }} ->> '$.answer')::boolean
  {%- endif -%}
{%- endmacro %}

{% macro spark__llm_filter(text, question, model, instructions, examples, rows_per_request, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {{- dbt_llm._llm_spark_no_confidence('filter', with_confidence) -}}
  {{- dbt_llm._llm_spark_no_cascade('filter', escalate_to) -}}
  {%- set call = dbt_llm._llm_prepare('filter', text, {'question': question, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request}, golden) -%}
  {%- if call is none -%}
    cast(null as boolean)
  {%- else -%}
    cast(get_json_object({{ dbt_llm._llm_spark_answer_sql(call, text) }}, '$.answer') as boolean)
  {%- endif -%}
{%- endmacro %}
