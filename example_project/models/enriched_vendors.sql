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
    }, examples=[
        {'input': 'Netgear 24-port PoE switches (6) for the warehouse', 'output': {'label': 'hardware'}},
        {'input': 'Monthly Jira Cloud subscription, 85 users', 'output': {'label': 'software'}},
        {'input': 'Tax advisory and year-end close support', 'output': {'label': 'services'}},
        {'input': 'Office lease, 4th floor, April', 'output': {'label': 'other'}}
    ]) }} as category,
    {{ dbt_llm.llm_extract('address', {'city': 'string', 'country': 'string', 'postal_code': 'string'}, examples=[
        {'input': 'Hauptstraße 5, 10115 Berlin, Germany',
         'output': {'city': 'Berlin', 'country': 'Germany', 'postal_code': '10115'}},
        {'input': '742 Evergreen Terrace, Springfield',
         'output': {'city': 'Springfield', 'country': none, 'postal_code': none}}
    ]) }} as addr
from {{ ref('raw_vendors') }}
where true
{% if var('vendor_limit', none) %}
  -- `make demo` enriches a slice on the embedded CPU model to stay within a few minutes.
  and vendor_id <= {{ var('vendor_limit') }}
{% endif %}
{% if is_incremental() %}
  and updated_at > (select coalesce(max(updated_at), '1900-01-01'::timestamp) from {{ this }})
{% endif %}
