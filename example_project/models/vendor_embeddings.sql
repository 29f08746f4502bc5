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
{% if var('vendor_limit', none) %}
  -- the same slice as enriched_vendors: `make demo` stays within a few minutes on the CPU
  and vendor_id <= {{ var('vendor_limit') }}
{% endif %}
