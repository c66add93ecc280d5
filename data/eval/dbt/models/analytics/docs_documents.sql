with

pages as (select * from {{ ref('stg_docs__pages') }}),

final as (select * from pages)

select * from final
