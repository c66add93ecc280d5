{#- One row per crawled page of completed loads; document ids are 'web:' || url. -#}

with

pages as (select * from {{ source('raw_docs', 'pages') }}),

completed_loads as ({{ completed_loads('raw_docs') }}),

final as (
    select
        'web:' || pages.url as document_id,
        coalesce(nullif(trim(pages.title), ''), pages.url) as title,
        pages.text as body,
        pages.sections,
        coalesce(pages.canonical_url, pages.url) as url,
        coalesce(pages.last_modified, pages.fetched_at) as updated_at,
        'docs' as source
    from pages
    inner join completed_loads on pages._dlt_load_id::text = completed_loads.load_id
    where nullif(trim(pages.text), '') is not null
)

select * from final
