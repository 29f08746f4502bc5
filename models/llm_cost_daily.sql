{#- What the LLM calls cost per day, dbt node, owner, provider model and function, for a BI tool to read.
    Off unless the project sets the var dbt_llm_models: true (a project that never calls an LLM gets no view). -#}
{{ config(materialized='view', enabled=var('dbt_llm_models', false)) }}

select
    cast(started_at as date) as day,
    node_id,
    owner,
    group_name,
    model,
    function,
    sum(rows) as rows,
    sum(cache_hits) as cache_hits,
    sum(api_calls) as calls,
    sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) as tokens,
    sum(cost_usd) as cost_usd
from {{ source('dbt_llm', 'llm_audit') }}
where status != 'dry_run'
group by all
