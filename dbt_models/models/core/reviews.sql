with

reviews as (

    select * from {{ ref('stg_demo__reviews') }}

),

items as (

    select * from {{ ref('stg_demo__items') }}

),

reviews_of_known_items as (

    -- Drop reviews whose item is not (yet) in a completed load.
    select reviews.*
    from reviews
    inner join items
        on reviews.item_id = items.item_id

),

final as (

    select
        review_id,
        item_id,
        rating,
        review_title,
        review_body,
        reviewer_name,
        created_at

    from reviews_of_known_items

)

select * from final
