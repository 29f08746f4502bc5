{#- Classify a text expression into one of `labels` (a list, or a dict label -> description).
    Returns VARCHAR, always one of the labels; NULL or blank text gives NULL with no call.
    With multi_label=true: VARCHAR[], every label that applies, in the order of `labels`; an empty
    list when none does (NULL still means there was no text).
    With with_confidence=true: STRUCT(label VARCHAR, confidence DOUBLE), the confidence being the
    probability the model gave its label among the labels (NULL where the provider gave no logprobs).
    With escalate_to='<model>', escalate_below=0.8 (or 'auto' with golden=): a cascade, the rows whose
    confidence is below escalate_below asked of escalate_to, whose answer is final; the same type. -#}
{% macro llm_classify(text, labels, model=none, instructions=none, examples=none, rows_per_request=none, multi_label=false, with_confidence=false, golden=none, escalate_to=none, escalate_below=none, cascade_target=none) -%}
  {{- dbt_llm._llm_check_text('classify', text) -}}
  {{- adapter.dispatch('llm_classify', 'dbt_llm')(text, labels, model, instructions, examples, rows_per_request, multi_label, with_confidence, golden, escalate_to, escalate_below, cascade_target) -}}
{%- endmacro %}

{% macro default__llm_classify(text, labels, model, instructions, examples, rows_per_request, multi_label, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {{- exceptions.raise_compiler_error("llm_classify: dbt-llm does not support the " ~ adapter.type() ~ " adapter yet; use dbt-duckdb with `module: dbt_llm.plugin` in profiles.yml, or dbt-spark through `dbt-llm spark`.") -}}
{%- endmacro %}

{% macro duckdb__llm_classify(text, labels, model, instructions, examples, rows_per_request, multi_label, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {%- set call = dbt_llm._llm_prepare('classify', text, {'labels': labels, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request, 'multi_label': multi_label, 'with_confidence': with_confidence}, golden, dbt_llm._llm_cascade_args(escalate_to, escalate_below, cascade_target)) -%}
  {%- if call is none -%}
    cast(null as {{ 'struct(label varchar, confidence double)' if with_confidence else 'varchar[]' if multi_label else 'varchar' }})
  {%- elif with_confidence -%}
    json_transform({{ dbt_llm._llm_answer_sql(call, text) }}, '{"label": "VARCHAR", "confidence": "DOUBLE"}')
  {%- elif multi_label -%}
    json_transform({{ dbt_llm._llm_resolve_sql(call, text) }}, {{ dbt_llm._llm_literal(call.structure) }}).labels
  {%- else -%}
    ({{ dbt_llm._llm_answer_sql(call, text) }} ->> '$.label')
  {%- endif -%}
{%- endmacro %}

{% macro spark__llm_classify(text, labels, model, instructions, examples, rows_per_request, multi_label, with_confidence, golden, escalate_to, escalate_below, cascade_target) -%}
  {{- dbt_llm._llm_spark_no_confidence('classify', with_confidence) -}}
  {{- dbt_llm._llm_spark_no_cascade('classify', escalate_to) -}}
  {%- set call = dbt_llm._llm_prepare('classify', text, {'labels': labels, 'model': model, 'instructions': instructions, 'examples': examples, 'rows_per_request': rows_per_request, 'multi_label': multi_label}, golden) -%}
  {%- if call is none -%}
    cast(null as {{ 'array<string>' if multi_label else 'string' }})
  {%- elif multi_label -%}
    from_json({{ dbt_llm._llm_spark_answer_sql(call, text) }}, '{{ call.type }}').labels
  {%- else -%}
    get_json_object({{ dbt_llm._llm_spark_answer_sql(call, text) }}, '$.label')
  {%- endif -%}
{%- endmacro %}
