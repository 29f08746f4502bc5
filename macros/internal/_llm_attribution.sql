{#- Who the model's spend belongs to, for its llm_audit rows: its group and the group's owner (from the
    manifest's groups, as dbt has them), its tags and meta. The plugin turns it into owner (the group's
    owner, else meta.owner), group_name, tags and meta (calls/attribution.py). -#}
{% macro _llm_attribution(meta) -%}
  {%- set group = config.get('group') or (model.group if model.group is defined else none) -%}
  {%- set found = namespace(owner=none) -%}
  {%- if group and graph.groups is defined -%}
    {%- for g in graph.groups.values() if g.name == group and g.package_name == model.package_name -%}
      {%- set found.owner = g.owner -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set tags = model.tags if model.tags is defined and model.tags is iterable else [] -%}
  {{- return({'group': group, 'group_owner': found.owner, 'tags': tags | list, 'meta': meta if meta is mapping else {}}) -}}
{%- endmacro %}
