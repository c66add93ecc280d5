with

reviews as (

    select * from {{ ref('reviews') }}

),

aggregated as (

    select
        item_id,
        count(*) as review_count,
        round(avg(rating), 2)::numeric(3, 2) as avg_rating,
        max(created_at) as last_reviewed_at

    from reviews
    group by item_id

),

final as (

    select * from aggregated

)

select * from final
