-- Semantic search: the vendors whose descriptions are nearest in meaning to a description you give,
--   dbt build --select similar_vendors --vars '{search_description: "cloud backup for the laptops"}'
-- The search text is embedded by the same model as the vendors (and cached like them).
{{ config(materialized='table') }}

with search as (
    select {{ dbt_llm.llm_embed('search_text', dimensions=var('embedding_dimensions', 768)) }} as embedding
    from (select {{ dbt.string_literal(var('search_description', 'Network switches and cabling for the office')) }}
          as search_text)
)

select
    v.vendor_id,
    v.vendor_name,
    v.description,
    round(array_cosine_similarity(v.embedding, search.embedding), 3) as similarity
from {{ ref('vendor_embeddings') }} as v, search
order by similarity desc, v.vendor_id
limit {{ var('search_limit', 5) }}
