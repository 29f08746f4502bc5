{#- Fails on rows whose label is not NULL and not one of `labels` (a list, or the dict given to
    llm_classify). For a multi_label column (VARCHAR[]), on every element that is not a label. -#}
{% test llm_label_valid(model, column_name, labels, multi_label=false) %}
{%- set names = labels.keys() | list if labels is mapping else labels -%}
{%- set allowed -%}({% for name in names %}{{ dbt_llm._llm_literal(name) }}{{ ", " if not loop.last }}{% endfor %}){%- endset -%}
{%- if multi_label %}
select _llm_label as label, count(*) as n
from (select {{ dbt_llm._llm_unnest(column_name) }} as _llm_label from {{ model }} where {{ column_name }} is not null)
where _llm_label is null or _llm_label not in {{ allowed }}
group by 1
{%- else %}
select {{ column_name }} as label, count(*) as n
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in {{ allowed }}
group by 1
{%- endif %}
{% endtest %}
