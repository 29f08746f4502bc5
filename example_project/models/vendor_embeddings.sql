-- One vector per vendor description, for semantic search (similar_vendors). With the embedded provider
-- it is nomic-embed-text-v1.5 (768 dimensions); each description is embedded once and cached.
{{ config(materialized='table') }}

select
    vendor_id,
    vendor_name,
    description,
    {{ dbt_llm.llm_embed('description', dimensions=var('embedding_dimensions', 768)) }} as embedding
from {{ ref('raw_vendors') }}
where nullif(trim(description), '') is not null
{%- set limit = var('embedding_limit', var('vendor_limit', none)) %}
{% if limit %}
  -- a slice (`make demo` embeds 40 vendors: an embedding costs a fraction of a completion on the CPU)
  and vendor_id <= {{ limit }}
{% endif %}
