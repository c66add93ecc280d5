{#-
    The load ids of completed dlt loads of one dlt source (its `_dlt_loads` rows with
    status 0), for a `completed_loads` CTE in a staging model:

        completed_loads as (

            {{ completed_loads('raw_data') }}

        ),

    Rows whose `_dlt_load_id` is not in it belong to a load that never completed (an aborted
    or crashed run) and must not reach downstream models. `distinct`: a kill while dlt
    completes a package can leave two `_dlt_loads` rows for one load id, so join on this list,
    never on `_dlt_loads` itself. The source must declare the `_dlt_loads` table.
-#}
{% macro completed_loads(source_name) -%}
    select distinct load_id::text as load_id
    from {{ source(source_name, '_dlt_loads') }}
    where status::bigint = 0
{%- endmacro %}
