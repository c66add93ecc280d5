{#-
    Documents to embed: one per item.
    body = item description (or a generated sentence when there is none),
    followed by up to 3 review snippets ranked "most helpful first":
    highest rating, then newest, then highest review_id.
-#}

{%- set max_review_snippets = 3 -%}
{%- set max_snippet_chars = 280 -%}

with

items as (

    select * from {{ ref('items') }}

),

reviews as (

    select * from {{ ref('reviews') }}

),

ranked_reviews as (

    select
        item_id,
        rating,
        reviewer_name,
        review_title,
        regexp_replace(review_body, '\s+', ' ', 'g') as review_body_flat,
        row_number() over (
            partition by item_id
            order by rating desc, created_at desc nulls last, review_id desc
        ) as helpfulness_rank

    from reviews
    where review_title is not null
        or review_body is not null

),

review_snippets as (

    select
        item_id,
        helpfulness_rank,
        'Rated ' || rating || ' out of 5'
        || coalesce(' by ' || reviewer_name, '')
        || ': '
        || concat_ws(
            ' ',
            case
                when review_title ~ '[.!?]$' then review_title
                else review_title || '.'
            end,
            case
                when length(review_body_flat) > {{ max_snippet_chars }}
                    then rtrim(
                        regexp_replace(left(review_body_flat, {{ max_snippet_chars - 3 }}), '\s+\S*$', ''),
                        ' .,;:!?-'
                    ) || '...'
                else review_body_flat
            end
        ) as snippet

    from ranked_reviews
    where helpfulness_rank <= {{ max_review_snippets }}

),

snippets_per_item as (

    select
        item_id,
        string_agg(snippet, E'\n' order by helpfulness_rank) as review_snippets

    from review_snippets
    group by item_id

),

documents as (

    select
        'item:' || items.item_id::text as document_id,
        coalesce(items.item_name, items.sku, 'Item ' || items.item_id::text) as title,

        concat_ws(
            E'\n\n',
            coalesce(
                items.description,
                concat_ws(
                    ' ',
                    coalesce(items.item_name, 'Item ' || items.item_id::text),
                    'by ' || items.brand,
                    'in the ' || replace(items.category, '_', ' ') || ' category.'
                )
            ),
            'What reviewers say:' || E'\n' || snippets_per_item.review_snippets
        ) as body,

        items.url,
        greatest(items.updated_at, items.last_reviewed_at) as updated_at,
        'demo' as source,
        items.item_id,
        items.sku,
        items.category,
        items.brand,
        items.price,
        items.price_band,
        items.avg_rating,
        items.review_count

    from items
    left join snippets_per_item
        on items.item_id = snippets_per_item.item_id

),

final as (

    select
        document_id::text as document_id,
        title::text as title,
        body::text as body,
        url::text as url,
        updated_at::timestamptz as updated_at,
        source::text as source,
        item_id::bigint as item_id,
        sku::text as sku,
        category::text as category,
        brand::text as brand,
        price::numeric(12, 2) as price,
        price_band::text as price_band,
        avg_rating::numeric(3, 2) as avg_rating,
        review_count::bigint as review_count

    from documents

)

select * from final
