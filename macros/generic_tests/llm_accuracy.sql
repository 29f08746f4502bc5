{#- Fails when the model's last run scored its golden sets (`golden=` on its calls) below `min_accuracy`:
    golden_correct / golden_rows over the run's llm_audit rows (every golden set of the model). The
    failing row (stored by default, dbt prints where) says the figure, then the mistakes most often made
    (expected→answer; for llm_extract the fields), from llm_golden_results. A last run that answered no
    golden input fails too, saying so; a model that never ran passes. -#}
{% test llm_accuracy(model, min_accuracy=0.9) %}
{{ config(store_failures=true) }}
{{ dbt_llm._llm_refuse_off_duckdb('llm_accuracy') }}
{%- set schema = dbt_llm._llm_schema() -%}
{{ dbt_llm._llm_last_run(model) }},
scored as (
  select coalesce(sum(golden_rows), 0) as golden_rows, coalesce(sum(golden_correct), 0) as golden_correct,
         any_value(invocation_id) as invocation_id, any_value(node_id) as node_id
  from last_run
),
results as (
  select r.* from {{ schema }}.llm_golden_results as r join scored as s using (invocation_id, node_id)
),
confused as (
  select expected || '→' || answer as mistake, count(*) as n from results
  where not correct and wrong_fields is null group by all
),
fields as (
  select field, count(*) as n from (select unnest(wrong_fields) as field from results where not correct) group by all
),
unanswered as (select count(*) as n from results where answer is null)
select s.golden_rows, s.golden_correct, s.golden_correct / nullif(s.golden_rows, 0) as accuracy,
       {{ min_accuracy }} as min_accuracy, s.invocation_id,
       case when s.golden_rows = 0
         then printf('golden accuracy: the last run of %s answered no golden input; set golden=ref(...) on its llm_classify, llm_filter or llm_extract call (see the README, Accuracy)', s.node_id)
         else printf('golden accuracy %s/%d = %.2f, below min_accuracy %.2f', printf('%g', s.golden_correct), s.golden_rows,
                     s.golden_correct / s.golden_rows, cast({{ min_accuracy }} as double))
              || coalesce('; most confused: ' || (select string_agg(mistake || ' ' || n, ', ' order by n desc, mistake)
                                                  from (select * from confused order by n desc, mistake limit 3)), '')
              || coalesce('; fields most often wrong: ' || (select string_agg(field || ' ' || n, ', ' order by n desc, field)
                                                            from (select * from fields order by n desc, field limit 3)), '')
       end
       || case when u.n > 0 then printf('; %d golden input(s) got no answer and are not scored (see %s.llm_errors)', u.n, {{ dbt_llm._llm_literal(schema) }}) else '' end
       as problem
from scored as s, unanswered as u
{#- Rounded: 21/30 is at min_accuracy 0.7, whatever the last bit of either double. #}
where s.invocation_id is not null
  and (s.golden_rows = 0 or round(s.golden_correct / s.golden_rows, 9) < {{ min_accuracy }})
{% endtest %}
