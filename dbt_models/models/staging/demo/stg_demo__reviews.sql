with

source as (

    select * from {{ source('raw_data', 'reviews') }}

),

completed_loads as (

    {{ completed_loads('raw_data') }}

),

renamed as (

    select
        ----------  ids
        source.review_id::bigint as review_id,
        source.item_id::bigint as item_id,

        ---------- numerics
        source.rating::integer as rating,

        ---------- strings
        nullif(trim(source.title::text), '') as review_title,
        nullif(trim(source.body::text), '') as review_body,
        nullif(trim(source.reviewer_name::text), '') as reviewer_name,

        ---------- timestamps
        source.created_at::timestamptz as created_at,

        ---------- dlt lineage
        source._dlt_load_id::text as dlt_load_id,
        source._dlt_id::text as dlt_id

    from source
    inner join completed_loads
        on source._dlt_load_id::text = completed_loads.load_id

),

deduplicated as (

    -- dlt may append the same review in several loads: keep the latest load.
    select
        *,
        row_number() over (
            partition by review_id
            order by dlt_load_id desc, dlt_id desc
        ) as version_rank

    from renamed
    where review_id is not null

),

final as (

    select
        review_id,
        item_id,
        rating,
        review_title,
        review_body,
        reviewer_name,
        created_at,
        dlt_load_id,
        dlt_id

    from deduplicated
    where version_rank = 1

)

select * from final
