{#-
    Use custom schema names verbatim (staging, core, analytics) instead of
    dbt's default "<target.schema>_<custom_schema>" concatenation.
    Models without a custom schema fall back to target.schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
