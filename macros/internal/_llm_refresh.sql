{#- `--vars '{dbt_llm_refresh: true}'`: an incremental model's post-hook re-asks, in place, its rows whose
    text has no answer in llm_cache under the spec its call has now (what llm_up_to_date counts). They
    go through the call's own SQL, so each is paid once, cached and audited like any row. Only once per
    model (dbt adds a post-hook per call), never on a full refresh (every row was just asked) or a dry run. -#}
{% macro _llm_refreshing(materialized) -%}
  {%- if var('dbt_llm_refresh', false) not in (true, 'true', 'True', 1) or dbt_llm._llm_dry_run() -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- if materialized != 'incremental' or flags.FULL_REFRESH -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- set settled = run_query("select dbt_llm_settled('" ~ invocation_id ~ "', '" ~ model.unique_id ~ "')") -%}
  {{- return(not settled.columns[0].values()[0]) -}}
{%- endmacro %}

{% macro _llm_refresh_sql() -%}
  {%- set payload = {'raw_code': model.raw_code, 'calls': dbt_llm._llm_parsed_calls(model)} -%}
  {%- set found = fromjson(run_query('select dbt_llm_refresh_columns(' ~ dbt_llm._llm_literal(tojson(payload)) ~ ')').columns[0].values()[0]) -%}
  {%- if found.error -%}
    {{ exceptions.raise_compiler_error(found.error) }}
  {%- endif -%}
  {%- for other in found.others -%}
    {%- do log("dbt_llm_refresh: column `" ~ other ~ "` of " ~ model.unique_id ~ " is not a call's value itself (a field of it, or an expression around it), so it is not re-asked in place; if dbt_llm.llm_up_to_date finds it stale, run the model with --full-refresh.", info=true) -%}
  {%- endfor -%}
  {%- for column in found.columns -%}
    {%- set call = dbt_llm._llm_spec_of_column(model, column) -%}
    {%- set f, text, args = call.function, call.text, call.args -%}
    {%- if f == 'classify' -%}{%- set answer = dbt_llm.llm_classify(text, **args) -%}
    {%- elif f == 'extract' -%}{%- set answer = dbt_llm.llm_extract(text, **args) -%}
    {%- elif f == 'filter' -%}{%- set answer = dbt_llm.llm_filter(text, **args) -%}
    {%- elif f == 'complete' -%}{%- set answer = dbt_llm.llm_complete(text, **args) -%}
    {%- else -%}{%- set answer = dbt_llm.llm_embed(text, **args) -%}
    {%- endif -%}
    {%- set sql = dbt_llm._llm_key_sql(call, text) %}
    update {{ this }} set {{ adapter.quote(column) }} = {{ answer }}
    where {{ sql.value }} is not null
      and not exists (select 1 from {{ call.cache_table }} as _llm_c where _llm_c.key = {{ sql.key }});
  {%- endfor %}
{% endmacro %}
