{{ config(materialized='incremental', unique_key='vendor_id') }}

select
    vendor_id,
    vendor_name,
    description,
    address,
    updated_at,
    {{ dbt_llm.llm_classify('description', {
        'software': 'software licences, SaaS subscriptions, cloud hosting, developer or security tools',
        'hardware': 'physical computing or office equipment: laptops, servers, network gear, printers, phones',
        'services': 'work done by people: consulting, legal, accounting, cleaning, staffing, agencies, logistics',
        'other': 'anything else: rent, utilities, travel, insurance, furniture, donations, supplies'
    }) }} as category,
    {{ dbt_llm.llm_extract('address', {'city': 'string', 'country': 'string', 'postal_code': 'string'}) }} as addr
from {{ ref('raw_vendors') }}
{% if is_incremental() %}
where updated_at > (select coalesce(max(updated_at), '1900-01-01'::timestamp) from {{ this }})
{% endif %}
