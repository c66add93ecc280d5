"""Non-ASCII text of crawled pages round-trips through the whole pipeline (issue 12, item 2):
crawl -> ``raw_data.pages`` -> dbt documents model -> chunks -> the full-text index.

The product's own dbt project models the demo catalogue only; web pages reach the documents
side through a model the analyst adds. This test builds exactly the model that
docs/sources.md ("Using crawled pages as documents to embed") tells users to write, in a dbt
project of its own, and runs the real ``data_pipeline`` flow on it: dlt, dbt, the local
embedding model, pgvector and Postgres full-text search, all real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from flows.main import data_pipeline
from tasks.search.fulltext import FullTextSearch, chunk_text_table
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse
from tests.conftest import REPO
from tests.sources.conftest import write_sources
from tests.sources.servers import LocalServer, Reply

SAMPLE = "Café naïve résumé — “quoted” – Tōkyō 東京タワー"
XHTML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
    '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Überblick — 概要</title></head>'
    '<body><div class="chapter"><h1>Überblick — 概要</h1><p>{text} The handbook explains how '
    "the espresso machine is descaled every week by the night shift.</p>"
    "<h2>Entkalken</h2><p>Descaling takes twenty minutes and needs the blue descaler from the "
    "cupboard under the sink, never vinegar. "
    + "Fill the tank, run the descaling program, rinse twice with fresh water. "
    * 12
    + "</p>"
    '<p><a href="/menu.html">Menu</a></p></div></body></html>'
)
HTML5 = (
    '<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Menu – Crème brûlée'
    "</title></head><body><main><h1>Menu</h1><p>Crème brûlée, déjà vu — {text} The menu lists "
    "every dessert the café serves in winter.</p></main></body></html>"
)

DBT_PROJECT = """
name: web_docs
version: "1.0.0"
profile: semantic_index
model-paths: ["models"]
macro-paths: ["macros"]
flags: {send_anonymous_usage_stats: false}
vars: {raw_schema: raw_data}
models:
  web_docs:
    staging: {+materialized: view, +schema: staging}
    analytics: {+materialized: table, +schema: analytics}
"""
SOURCES_YML = """
sources:
  - name: raw_handbook
    schema: "{{ var('raw_schema', 'raw_data') }}"
    tables:
      - name: pages
      - name: _dlt_loads
"""
STAGING_SQL = """
with

pages as (select * from {{ source('raw_handbook', 'pages') }}),

completed_loads as ({{ completed_loads('raw_handbook') }}),

final as (
    select
        'web:' || pages.url as document_id,
        coalesce(nullif(trim(pages.title), ''), pages.url) as title,
        pages.text as body,
        pages.sections,
        coalesce(pages.canonical_url, pages.url) as url,
        coalesce(pages.last_modified, pages.fetched_at) as updated_at,
        'handbook' as source
    from pages
    inner join completed_loads on pages._dlt_load_id::text = completed_loads.load_id
    where nullif(trim(pages.text), '') is not null
)

select * from final
"""
DOCUMENTS_YML = """
models:
  - name: handbook_documents
    description: One row per crawled handbook page.
    config:
      meta:
        embedding:
          id_column: document_id
          text_columns: [title, body]
          text_separator: '{{ "\\n\\n" }}'
          title_column: title
          url_column: url
          updated_at_column: updated_at
          metadata_columns: [source]
          sections_column: sections
          namespace: handbook
    columns:
      - name: document_id
        data_tests: [unique, not_null]
"""


def dbt_project(directory: Path) -> Path:
    """The documented handbook models in a dbt project using the product's profile."""
    shutil.copy(REPO / "dbt_models" / "profiles.yml", directory / "profiles.yml")
    shutil.copytree(REPO / "dbt_models" / "macros", directory / "macros")
    (directory / "dbt_project.yml").write_text(DBT_PROJECT)
    staging = directory / "models" / "staging" / "handbook"
    staging.mkdir(parents=True)
    (staging / "_handbook__sources.yml").write_text(SOURCES_YML)
    (staging / "stg_handbook__pages.sql").write_text(STAGING_SQL)
    analytics = directory / "models" / "analytics"
    analytics.mkdir(parents=True)
    (analytics / "handbook_documents.sql").write_text(
        "select * from {{ ref('stg_handbook__pages') }}\n"
    )
    (analytics / "_analytics__models.yml").write_text(DOCUMENTS_YML)
    return directory


@pytest.mark.integration
def test_non_ascii_text_reaches_chunks_and_full_text_search(
    env: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    server = LocalServer()
    # Served as the plain static server did: text/html, no charset.
    server.routes["/index.html"] = lambda r: Reply(
        200, XHTML.format(text=SAMPLE).encode("utf-8"), content_type="text/html"
    )
    server.routes["/menu.html"] = lambda r: Reply(
        200, HTML5.format(text=SAMPLE).encode("utf-8"), content_type="text/html"
    )
    server.start()
    try:
        sources = write_sources(
            tmp_path,
            f"""
sources:
  - name: handbook
    kind: web
    seeds: ["{server.url}/index.html"]
    delay_s: 0
    respect_robots_txt: false
    allow_private_addresses: true
""",
        )
        project = tmp_path / "dbt"
        project.mkdir()
        env.setenv("SOURCES_FILE", str(sources))
        env.setenv("DBT_PROJECT_DIR", str(dbt_project(project)))
        env.setenv("DBT_DOCS", "false")
        get_settings.cache_clear()

        summary = data_pipeline()
    finally:
        server.stop()

    assert summary.ingest[0].rows_by_table == {"pages": 2}
    [index] = summary.index
    assert index.namespace == "handbook" and index.documents == 2
    settings = get_settings()
    warehouse = get_warehouse(settings)
    table = chunk_text_table(settings, index.physical_namespace or index.namespace)
    with psycopg.connect(warehouse.conninfo) as conn:
        raw: dict[str, str] = dict(conn.execute("select url, text from raw_data.pages").fetchall())
        documents: dict[str, str] = dict(
            conn.execute("select document_id, body from analytics.handbook_documents").fetchall()
        )
        chunks = conn.execute(
            f'select document_id, text from "{table.schema}"."{table.table}"'
        ).fetchall()
    index_url, menu_url = f"{server.url}/index.html", f"{server.url}/menu.html"
    assert SAMPLE in raw[index_url] and "Crème brûlée, déjà vu" in raw[menu_url]
    assert SAMPLE in documents[f"web:{index_url}"]
    assert "Crème brûlée, déjà vu" in documents[f"web:{menu_url}"]
    chunk_text = {doc: text for doc, text in chunks if SAMPLE in text}
    assert "Überblick — 概要" in chunk_text[f"web:{index_url}"]  # the title, prepended
    # The page's sections reach the chunker through dbt: the h2 section is a chunk of its own
    # under the page title and its heading path (the h1 equals the title: not repeated).
    descaling = [text for _, text in chunks if "descaling program" in text]
    assert descaling and all(t.startswith("Überblick — 概要 > Entkalken\n\n") for t in descaling)
    assert any(t.startswith("Überblick — 概要 > Entkalken\n\nDescaling takes") for t in descaling)

    # The full-text index matches the accented and the CJK words as written.
    fulltext = FullTextSearch(warehouse, settings.search_fulltext_config)
    try:
        for word, expected in [
            ("résumé", {f"web:{index_url}", f"web:{menu_url}"}),
            ("brûlée", {f"web:{menu_url}"}),
            ("東京タワー", {f"web:{index_url}", f"web:{menu_url}"}),
        ]:
            hits = fulltext.search(table, word, top_k=10)
            assert {hit.document_id for hit in hits} == expected, word
    finally:
        fulltext.close()
