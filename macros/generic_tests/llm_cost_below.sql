{#- Fails if the model's last run cost more than `max_usd` in LLM calls (or has no known price).
    The failing row (stored by default, dbt prints where) shows the cost and the limit. -#}
{% test llm_cost_below(model, max_usd) %}
{{ config(store_failures=true) }}
{{ dbt_llm._llm_last_run(model) }}
select sum(cost_usd) as cost_usd, {{ max_usd }} as max_usd, sum(api_calls) as api_calls,
       any_value(invocation_id) as invocation_id,
       case when sum(cost_usd) is null then 'no price is known for a model of this run: add it to `prices`'
            else printf('the last run cost $%.6f, more than max_usd $%.6f', sum(cost_usd), cast({{ max_usd }} as double)) end as problem
from last_run
having sum(cost_usd) is null or sum(cost_usd) > {{ max_usd }}
{% endtest %}
