{#- Fails if the model's last run left more than `max_rate` of its rows without an answer (see llm_errors).
    The failing row (stored by default, dbt prints where) shows the rate and the limit. -#}
{% test llm_error_rate(model, max_rate=0.0) %}
{{ config(store_failures=true) }}
{{ dbt_llm._llm_last_run(model) }}
select sum(failed_rows) as failed_rows, sum(rows) as rows, sum(failed_rows) / greatest(sum(rows), 1) as error_rate,
       {{ max_rate }} as max_rate, any_value(invocation_id) as invocation_id,
       printf('the last run left %d of %d rows without an answer (%.4f), more than max_rate %.4f; see %s.llm_errors',
              sum(failed_rows), sum(rows), sum(failed_rows) / greatest(sum(rows), 1), cast({{ max_rate }} as double),
              {{ dbt_llm._llm_literal(dbt_llm._llm_schema()) }}) as problem
from last_run
having sum(failed_rows) > {{ max_rate }} * greatest(sum(rows), 1)
{% endtest %}
