{#- Fails if the model's last run left more than `max_rate` of its rows without an answer (see llm_errors). -#}
{% test llm_error_rate(model, max_rate=0.0) %}
{{ dbt_llm._llm_last_run(model) }}
select sum(failed_rows) as failed_rows, sum(rows) as rows, {{ max_rate }} as max_rate
from last_run
having sum(failed_rows) > {{ max_rate }} * greatest(sum(rows), 1)
{% endtest %}
