{#- Register a macro call with the plugin (once, when the model renders) and attach the
    post-hook that settles the model. Returns none while dbt parses. -#}
{% macro _llm_prepare(function, text, args, golden=none, cascade={}) -%}
  {%- do args.update(cascade) -%}
  {%- if not execute -%}
    {#- At parse time: make the model's post-hook check failures and budget after all rows ran. -#}
    {%- do config(post_hook=["{{ dbt_llm._llm_finish() }}"]) -%}
    {#- Spark answers batch mode and dry runs before the statement (_llm_before); DuckDB needs nothing. -#}
    {%- if adapter.type() == 'spark' -%}
      {%- do config(pre_hook=["{{ dbt_llm._llm_before() }}"]) -%}
    {%- endif -%}
    {#- Microbatch batches of an LLM model run one after another: they share one rate limit, so running
        them at once buys nothing, and each batch's audit row is settled when dbt says it ended. At parse
        time config.get() answers '' for every key, so the model's own setting is looked for in its
        code (a config() call) and in the configs dbt gathered from the project and the yml files. -#}
    {%- set configured = (model.config or {}).get('concurrent_batches') if model.config is mapping else none -%}
    {%- if 'concurrent_batches' not in (model.raw_code or '') and configured is none -%}
      {%- do config(concurrent_batches=false) -%}
    {%- endif -%}
    {#- A dry run writes no batch: dbt-duckdb's delete+insert of a batch selects and deletes the rows
        whose event_time is in the batch's window, so with an event_time that is never in a window each
        batch is priced over all its rows and commits nothing. -#}
    {%- if dbt_llm._llm_dry_run() and dbt_llm._llm_is_microbatch() -%}
      {#- A full refresh's first batch would replace the table: a dry run keeps it (see _llm_finish).
          Set whatever the flags: a partial parse does not parse again when only --full-refresh changed. -#}
      {%- do config(event_time='cast(null as timestamp)', full_refresh=false) -%}
    {%- endif -%}
    {#- The call as the model's code has it now, for the tests that judge a column without running the
        model (llm_up_to_date): one meta key per distinct call (meta merges key by key), in code order. -#}
    {%- set entry = {'function': function, 'text': text, 'args': args} -%}
    {%- do config(meta={'dbt_llm_call_' ~ local_md5(tojson(entry))[:12]: entry}) -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set where = 'llm_' ~ function ~ '(' ~ text ~ ') in ' ~ model.unique_id -%}
  {%- set materialized = config.get('materialized') -%}
  {#- An inline query (`dbt show --inline`, `dbt compile --inline`) is no view: it runs once, as a preview. -#}
  {%- if materialized in ('view', 'ephemeral') and model.resource_type != 'sql_operation' -%}
    {{ exceptions.raise_compiler_error(where ~ ": the model is materialized as " ~ materialized ~ ", so every query of it would call the LLM again and failures could not be checked. Materialize it as table or incremental: {{ config(materialized='incremental', unique_key=...) }}.") }}
  {%- endif -%}
  {#- A microbatch model renders once per batch: each batch is a call of its own that fails on its own rows. -#}
  {%- set batch = model.batch if model.batch is defined and model.batch else none -%}
  {%- set meta = config.get('meta') or {} -%}
  {#- A table a dry run has to create (an incremental model's first build, a microbatch model's first
      batch) is kept for the models downstream, then dropped at the end of the run (see _llm_finish). -#}
  {%- set creates = dbt_llm._llm_dry_run() and materialized == 'incremental' and load_relation(this) is none -%}
  {%- set payload = {'function': function, 'text': text, 'where': where, 'invocation_id': invocation_id, 'node_id': model.unique_id,
                     'command': flags.WHICH, 'hooked': flags.WHICH in dbt_llm._llm_hooked_commands(),
                     'batch_id': batch.id if batch else '',
                     'model_settings': meta.get('dbt_llm') if meta is mapping else none,
                     'mode': var('dbt_llm_mode', none),
                     'recheck': var('dbt_llm_recheck', none), 'compare': var('dbt_llm_compare', none),
                     'dry_run': dbt_llm._llm_dry_run(), 'dry_run_creates': creates,
                     'attribution': dbt_llm._llm_attribution(meta)} -%}
  {%- do payload.update(args) -%}
  {#- golden=: checked here, answered by the post-hook (_llm_golden.sql); not in the meta entry above, as it changes no answer. -#}
  {%- if golden is not none -%}
    {%- do payload.update({'golden': dbt_llm._llm_golden_relation(golden, where)}) -%}
  {%- endif -%}
  {{- return(adapter.dispatch('_llm_plan', 'dbt_llm')(payload, where)) -}}
{%- endmacro %}

{#- DuckDB: the plugin plans the call in the dbt process. -#}
{% macro duckdb___llm_plan(payload, where) -%}
  {%- set plugin = run_query("select count(*) from duckdb_functions() where function_name = 'dbt_llm_prepare'") -%}
  {%- if plugin.columns[0].values()[0] == 0 -%}
    {{ exceptions.raise_compiler_error(where ~ ": the dbt_llm plugin is not loaded. Add it to your dbt-duckdb profile: plugins: [{module: dbt_llm.plugin, config: {...}}] (see the README).") }}
  {%- endif -%}
  {%- set result = run_query('select dbt_llm_prepare(' ~ dbt_llm._llm_literal(tojson(payload)) ~ ')') -%}
  {%- set call = fromjson(result.columns[0].values()[0]) -%}
  {%- if call.error -%}
    {{ exceptions.raise_compiler_error(call.error) }}
  {%- endif -%}
  {#- The call's rows are counted in SQL, on a sequence of its own (_llm_counted_sql); made on dbt's
      connection, so the model's statement sees it; the plugin reads and drops it (duckdb/row_counts.py). -#}
  {%- if call.rows_sequence -%}
    {%- do run_query('create sequence if not exists ' ~ call.rows_sequence) -%}
  {%- endif -%}
  {{- return(call) -}}
{%- endmacro %}

{#- Spark: `dbt-llm spark` registered dbt_llm_prepare, which plans the call on an executor (the config is
    the dbt var `dbt_llm`); the llm_* tables are created or migrated here, before the model's query. -#}
{% macro spark___llm_plan(payload, where) -%}
  {%- if var('dbt_llm_refresh', false) -%}
    {{ exceptions.raise_compiler_error(where ~ ": dbt_llm_refresh is not available on Spark yet; rebuild the model with --full-refresh instead.") }}
  {%- endif -%}
  {%- set registered = run_query("show user functions like 'dbt_llm_prepare'") -%}
  {%- if registered.rows | length == 0 -%}
    {{ exceptions.raise_compiler_error(where ~ ": dbt-llm's functions are not registered on this Spark session. Run dbt through dbt-llm: `dbt-llm spark " ~ flags.WHICH ~ " ...` (pip install 'dbt-llm[spark]'; see the README).") }}
  {%- endif -%}
  {%- do payload.update({'config': var('dbt_llm', {})}) -%}
  {%- do payload.update({'materialized': config.get('materialized')}) -%}
  {%- if flags.WHICH == 'show' -%}
    {%- do payload.update({'preview_limit': invocation_args_dict.get('limit')}) -%}
  {%- endif -%}
  {%- set result = run_query('select dbt_llm_prepare(' ~ dbt_llm._llm_spark_literal(payload) ~ ')') -%}
  {%- set call = fromjson(result.columns[0].values()[0]) -%}
  {%- if call.error -%}
    {{ exceptions.raise_compiler_error(call.error) }}
  {%- endif -%}
  {#- Under the merge lock: models compile on several threads, and two jobs appending to one table at once can lose files. -#}
  {%- set owner = dbt_llm._llm_spark_literal(invocation_id ~ ' ' ~ model.unique_id) -%}
  {%- do run_query('select dbt_llm_lock(' ~ owner ~ ')') -%}
  {%- for statement in call.create_schema -%}
    {%- do run_query(statement) -%}
  {%- endfor -%}
  {%- set applied = run_query(call.migrations_query).columns[0].values() -%}
  {%- for migration in call.migrations if migration.name not in applied -%}
    {%- for statement in migration.statements -%}
      {%- do run_query(statement) -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- do run_query('select dbt_llm_unlock(' ~ owner ~ ')') -%}
  {{- return(call) -}}
{%- endmacro %}
