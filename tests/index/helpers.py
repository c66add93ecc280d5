"""Helpers for indexing tests: a documents table the tests edit, and readers of the store and the
ledger that go straight to SQL (not through the code under test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from tasks.documents import EmbeddingSpec
from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions
from tasks.settings import OpenAIEmbedderConfig

SPEC = EmbeddingSpec(
    model="model.test.docs",
    schema_name="analytics",
    relation="docs",
    id_column="document_id",
    text_columns=["title", "body"],
    title_column="title",
    metadata_columns=["category", "price"],
    namespace="products",
)


@dataclass
class Doc:
    """One row of ``analytics.docs``."""

    title: str
    body: str
    category: str = "kitchen"
    price: float = 10.0

    @property
    def text(self) -> str:
        """The document text the indexer builds (title and body, joined like the spec says)."""
        return f"{self.title}\n\n{self.body}"


def write_docs(conninfo: str, docs: dict[str, Doc]) -> None:
    """Replace the documents table's rows with ``docs``."""
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute("create schema if not exists analytics")
        conn.execute(
            "create table if not exists analytics.docs (document_id text primary key, "
            "title text, body text, category text, price numeric(12, 2))"
        )
        conn.execute("delete from analytics.docs")
        with conn.cursor() as cur:
            cur.executemany(
                "insert into analytics.docs values (%s, %s, %s, %s, %s)",
                [(i, d.title, d.body, d.category, d.price) for i, d in docs.items()],
            )


def store_rows(conninfo: str, physical: str, schema: str = "semantic_index") -> dict[str, Any]:
    """``{id: (content_hash, metadata, embedding text)}`` of a pgvector namespace table."""
    with psycopg.connect(conninfo) as conn:
        exists = conn.execute(
            "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
            (schema, physical),
        ).fetchone()
        if not exists:
            return {}
        rows = conn.execute(
            f'select id, content_hash, metadata, embedding::text from "{schema}"."{physical}"'
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def ledger_rows(conninfo: str, physical: str) -> dict[str, tuple[str, str]]:
    """``{chunk id: (content_hash, state)}`` of the ledger for a physical namespace."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select chunk_id, content_hash, state from index_state.chunks where namespace = %s",
            (physical,),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def tables(conninfo: str, schema: str = "semantic_index") -> set[str]:
    """Tables in ``schema``."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def fake_openai(base_url: str, dimensions: int = 8, **options: Any) -> OpenAIEmbedder:
    """The real OpenAI embedder pointed at the local fake server (no real waits on retry)."""
    config = OpenAIEmbedderConfig(
        api_key="test-key", base_url=base_url, dimensions=dimensions, timeout_s=30
    )
    return OpenAIEmbedder(
        config, OpenAIOptions(**{"max_concurrency": 1, **options}), sleep=lambda s: None
    )
