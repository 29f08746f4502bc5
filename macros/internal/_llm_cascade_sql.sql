{#- The SQL of a cascade (escalate_to=), as JSON text in the form of the call without one. Its cache join
    looks up two keys of each distinct text, the call model's and escalate_to's (the keys plain calls of
    each model make): the first model's answer is final when its confidence is at least the threshold, else
    escalate_to's when it is cached. Only the texts neither gives reach dbt_llm_cascade_submit (told whether
    the first model's answer is cached, below the threshold: then only escalate_to is asked) and their rows
    dbt_llm_resolve, which asks the first model and then escalate_to for the rows below the threshold: the
    larger model is never asked, not even by the prefetch, for a row the first model is sure of. As in
    _llm_resolve_sql, a cached row touches no UDF and is counted in SQL. -#}
{% macro _llm_cascade_sql(call, text) -%}
  {%- set sql = dbt_llm._llm_key_sql(call, text) -%}
  {%- set value, key, raw = sql.value, sql.key, sql.raw -%}
  {%- set large_key = "sha256('" ~ call.cascade.spec_hash ~ "' || " ~ value ~ ")" -%}
  {%- set threshold = dbt_llm._llm_cascade_auto(call) if call.cascade.auto else call.cascade.threshold -%}
  {%- set shown = "_llm_c._llm_result" -%}
  {%- if call.confidence -%}
    {%- set shown = "json_object('" ~ call.confidence.name ~ "', _llm_c._llm_result -> '$." ~ call.confidence.key ~ "', 'confidence', _llm_c._llm_confidence)" -%}
  {%- endif -%}
  {%- set cached = "(select coalesce(max(case when not _llm_k._llm_large and _llm_c._llm_confidence >= " ~ threshold
      ~ " then " ~ shown ~ " end), max(case when _llm_k._llm_large and _llm_c._llm_key is not null then " ~ shown ~ " end), dbt_llm_cascade_submit(" ~ key ~ ", " ~ value ~ ", " ~ raw
      ~ ", bool_or(not _llm_k._llm_large and _llm_c._llm_key is not null), '" ~ call.handle ~ "'))"
      ~ " from (select unnest([" ~ key ~ ", " ~ large_key ~ "]) as _llm_key, unnest([false, true]) as _llm_large) as _llm_k"
      ~ " left join (select key as _llm_key, result as _llm_result, confidence as _llm_confidence from " ~ call.cache_table
      ~ ") as _llm_c on _llm_c._llm_key = _llm_k._llm_key)" -%}
  {{- dbt_llm._llm_counted_sql(call, "coalesce(" ~ cached ~ ", dbt_llm_resolve(" ~ raw ~ ", '" ~ call.handle ~ "'))") -}}
{%- endmacro %}

{#- escalate_below='auto': the threshold, chosen from the golden set before the cascade's SQL is rendered.
    Both models answer every golden input through their calls' own SQL (_llm_resolve_sql: cached like any
    row, so a rerun sends nothing; paid into each model's audit row, never its rows), and
    dbt_llm_cascade_choose picks the lowest threshold at which the cascade agrees with escalate_to on
    cascade_target of them (calls/cascade.py). A command without post-hooks (dbt compile, show) answers no
    golden set, and a dry run asks none: they use the last run's threshold (llm_audit), else 1.0. -#}
{% macro _llm_cascade_auto(call) -%}
  {%- set auto = fromjson(run_query("select dbt_llm_cascade_auto_calls('" ~ call.handle ~ "')").columns[0].values()[0]) -%}
  {%- set last = "(select cascade_threshold from " ~ auto.audit_table ~ " where node_id = '" ~ model.unique_id ~ "' and model = '"
      ~ call.model ~ "' and cascade_agreement is not null order by started_at desc limit 1)" -%}
  {%- set input = '_llm_g.' ~ adapter.quote('input') -%}
  {%- if flags.WHICH in dbt_llm._llm_hooked_commands() -%}
    {%- set pairs = "(select cast(to_json(coalesce(list([" ~ dbt_llm._llm_resolve_sql(auto.small, input) ~ ", " ~ dbt_llm._llm_resolve_sql(auto.large, input)
        ~ "]), [])) as varchar) from " ~ auto.golden ~ " as _llm_g)" -%}
  {%- else -%}
    {%- set pairs = "'null'" -%}
  {%- endif -%}
  {%- set chosen = run_query("select dbt_llm_cascade_choose(" ~ pairs ~ ", coalesce(" ~ last ~ ", 0), '" ~ call.handle ~ "')") -%}
  {{- return(chosen.columns[0].values()[0]) -}}
{%- endmacro %}

{#- A call's answer as JSON text: through its cascade, if it has one. -#}
{% macro _llm_answer_sql(call, text) -%}
  {{- dbt_llm._llm_cascade_sql(call, text) if call.cascade else dbt_llm._llm_resolve_sql(call, text) -}}
{%- endmacro %}

{#- A cascade's macro arguments, only those given: a call without one keeps the arguments it had. -#}
{% macro _llm_cascade_args(escalate_to, escalate_below, cascade_target) -%}
  {%- set given = {} -%}
  {%- for name, value in [('escalate_to', escalate_to), ('escalate_below', escalate_below), ('cascade_target', cascade_target)] if value is not none -%}
    {%- do given.update({name: value}) -%}
  {%- endfor -%}
  {{- return(given) -}}
{%- endmacro %}
