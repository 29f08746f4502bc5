{#- Fails on rows whose label is not NULL and not one of `labels` (a list, or the dict given to llm_classify). -#}
{% test llm_label_valid(model, column_name, labels) %}
{%- set names = labels.keys() | list if labels is mapping else labels -%}
select {{ column_name }} as label, count(*) as n
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in ({% for name in names %}{{ dbt_llm._llm_literal(name) }}{{ ", " if not loop.last }}{% endfor %})
group by 1
{% endtest %}
