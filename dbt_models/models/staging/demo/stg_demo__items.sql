with

source as (

    select * from {{ source('raw_data', 'items') }}

),

completed_loads as (

    {{ completed_loads('raw_data') }}

),

renamed as (

    select
        ----------  ids
        source.item_id::bigint as item_id,
        nullif(trim(source.sku::text), '') as sku,

        ---------- strings
        nullif(trim(source.name::text), '') as item_name,
        lower(nullif(trim(source.category::text), '')) as category,
        nullif(trim(source.brand::text), '') as brand,
        upper(nullif(trim(source.currency::text), '')) as currency,
        nullif(trim(source.description::text), '') as description,
        nullif(trim(source.url::text), '') as url,

        ---------- numerics
        source.price::numeric(12, 2) as price,

        ---------- timestamps
        source.updated_at::timestamptz as updated_at,

        ---------- dlt lineage
        source._dlt_load_id::text as dlt_load_id,
        source._dlt_id::text as dlt_id

    from source
    inner join completed_loads
        on source._dlt_load_id::text = completed_loads.load_id

),

deduplicated as (

    -- dlt may append the same item in several loads: keep the latest version.
    select
        *,
        row_number() over (
            partition by item_id
            order by updated_at desc nulls last, dlt_load_id desc, dlt_id desc
        ) as version_rank

    from renamed
    where item_id is not null

),

final as (

    select
        item_id,
        sku,
        item_name,
        category,
        brand,
        currency,
        description,
        url,
        price,
        updated_at,
        dlt_load_id,
        dlt_id

    from deduplicated
    where version_rank = 1

)

select * from final
