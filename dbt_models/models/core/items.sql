{#-
    price_band
    - Categories with >= 3 priced items: per-category price tertiles using
      cume_dist() over price: <= 1/3 'budget', <= 2/3 'mid', else 'premium'
      (equal prices always share a band).
    - Smaller categories (tertiles are meaningless): fixed thresholds,
      price < 25 'budget', < 100 'mid', else 'premium'.
    - Items without a price: null.
-#}

{%- set min_items_for_tertiles = 3 -%}
{%- set budget_below = 25 -%}
{%- set premium_from = 100 -%}

with

items as (

    select * from {{ ref('stg_demo__items') }}

),

review_stats as (

    select * from {{ ref('int_reviews_aggregated_to_items') }}

),

price_positions as (

    select
        item_id,
        cume_dist() over (
            partition by category
            order by price
        ) as price_cume_dist,
        count(*) over (partition by category) as priced_items_in_category

    from items
    where price is not null

),

joined as (

    select
        items.item_id,
        items.sku,
        items.item_name,
        items.category,
        items.brand,
        items.currency,
        items.description,
        items.url,
        items.price,

        case
            when items.price is null then null
            when price_positions.priced_items_in_category < {{ min_items_for_tertiles }}
                then
                    case
                        when items.price < {{ budget_below }} then 'budget'
                        when items.price < {{ premium_from }} then 'mid'
                        else 'premium'
                    end
            when price_positions.price_cume_dist <= 1.0 / 3 then 'budget'
            when price_positions.price_cume_dist <= 2.0 / 3 then 'mid'
            else 'premium'
        end as price_band,

        coalesce(review_stats.review_count, 0) as review_count,
        review_stats.avg_rating,
        review_stats.last_reviewed_at,
        items.updated_at

    from items
    left join review_stats
        on items.item_id = review_stats.item_id
    left join price_positions
        on items.item_id = price_positions.item_id

),

final as (

    select * from joined

)

select * from final
