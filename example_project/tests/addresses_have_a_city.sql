-- A non-blank address should almost always yield a city: fail if more than 10% lack one.
with addressed as (
    select addr.city is not null as has_city
    from {{ ref('enriched_vendors') }}
    where nullif(trim(address), '') is not null
)
select count(*) filter (where not has_city) as missing_city, count(*) as addressed
from addressed
having count(*) filter (where not has_city) > 0.1 * count(*)
