{#- Fails if the model's last run cost more than `max_usd` in LLM calls (or has no known price). -#}
{% test llm_cost_below(model, max_usd) %}
{{ dbt_llm._llm_last_run(model) }}
select sum(cost_usd) as cost_usd, {{ max_usd }} as max_usd
from last_run
having sum(cost_usd) is null or sum(cost_usd) > {{ max_usd }}
{% endtest %}
