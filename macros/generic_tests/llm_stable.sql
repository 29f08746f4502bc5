{#- Fails if the model's last recheck (the last run with `dbt_llm_recheck` or `recheck` set that asked
    cached rows again) agreed with the cached answers less than `min_agreement`. Passes while no run has
    rechecked anything. The failing row (stored by default, dbt prints where) shows the figure. -#}
{% test llm_stable(model, min_agreement=0.95) %}
{{ config(store_failures=true) }}
{{ dbt_llm._llm_refuse_off_duckdb('llm_stable') }}
{{ dbt_llm._llm_last_run(model) }},
last_recheck as (
  select * from model_runs
  where invocation_id = (select invocation_id from model_runs where recheck_rows > 0 order by started_at desc limit 1)
)
select sum(recheck_agree) as recheck_agree, sum(recheck_rows) as recheck_rows,
       sum(recheck_agree) / sum(recheck_rows) as agreement, {{ min_agreement }} as min_agreement,
       any_value(invocation_id) as invocation_id,
       printf('recheck agreement %d/%d = %.2f, below min_agreement %.2f: the provider answers these cached rows differently now (a model changed behind its name, or sampling); see %s.llm_audit',
              sum(recheck_agree), sum(recheck_rows), sum(recheck_agree) / sum(recheck_rows),
              cast({{ min_agreement }} as double), {{ dbt_llm._llm_literal(dbt_llm._llm_schema()) }}) as problem
from last_recheck
having sum(recheck_rows) > 0 and sum(recheck_agree) < {{ min_agreement }} * sum(recheck_rows)
{% endtest %}
