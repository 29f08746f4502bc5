-- What each model cost, per LLM function and provider model, over all runs.
select
    node_id,
    function,
    model,
    count(distinct invocation_id) as runs,
    sum(rows) as rows,
    sum(cache_hits) as cache_hits,
    sum(api_calls) as api_calls,
    sum(retries) as retries,
    sum(failed_rows) as failed_rows,
    sum(prompt_tokens) as prompt_tokens,
    sum(completion_tokens) as completion_tokens,
    round(sum(cost_usd), 6) as cost_usd,
    max(finished_at) as last_run_at
from {{ source('dbt_llm', 'llm_audit') }}
group by all
