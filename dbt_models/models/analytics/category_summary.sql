with

items as (

    select * from {{ ref('items') }}

),

reviews as (

    select * from {{ ref('reviews') }}

),

items_per_category as (

    select
        category,
        count(*) as item_count,
        round(avg(price), 2)::numeric(12, 2) as avg_price,
        min(price) as min_price,
        max(price) as max_price

    from items
    group by category

),

reviews_per_category as (

    select
        items.category,
        count(*) as review_count,
        round(avg(reviews.rating), 2)::numeric(3, 2) as avg_rating

    from reviews
    inner join items
        on reviews.item_id = items.item_id
    group by items.category

),

final as (

    select
        items_per_category.category,
        items_per_category.item_count,
        items_per_category.avg_price,
        items_per_category.min_price,
        items_per_category.max_price,
        coalesce(reviews_per_category.review_count, 0) as review_count,
        reviews_per_category.avg_rating

    from items_per_category
    left join reviews_per_category
        on items_per_category.category = reviews_per_category.category

)

select * from final
