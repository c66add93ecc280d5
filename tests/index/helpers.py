"""Helpers for indexing tests: a documents table the tests edit, and readers of the store and the
ledger that go straight to SQL (not through the code under test)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psycopg

from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions
from tasks.index.documents import EmbeddingSpec
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
        try:
            rows = conn.execute(
                "select chunk_id, content_hash, state from index_state.chunks where namespace = %s",
                (physical,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
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
    embedder = OpenAIEmbedder(
        config, OpenAIOptions(**{"max_concurrency": 1, **options}), sleep=lambda s: None
    )
    # Tag requests with the sending process: a killed process's last request can still reach
    # the server after the test moved on, and must not be counted as the re-run's.
    embedder._client = embedder._client.with_options(
        default_headers={"x-test-pid": str(os.getpid())}
    )
    return embedder


def expected(docs: dict[str, Doc], settings: Any, embedder: Any) -> dict[str, str]:
    """``{chunk id: content hash}`` the store must hold for ``docs`` (computed independently of
    the indexer's diff, from the chunker alone)."""
    from tasks.index.documents import Document
    from tasks.index.run import chunker_config, document_chunks

    config = chunker_config(settings, embedder)
    out: dict[str, str] = {}
    for doc_id, d in docs.items():
        doc = Document(doc_id, d.text, d.title, None, None, {})
        out.update(
            {c.id: c.content_hash for c in document_chunks(doc, config, embedder.count_tokens)}
        )
    return out


def crash_expected(docs: dict[str, Doc], database_url: str, base_url: str) -> dict[str, str]:
    """:func:`expected` with the crash tests' settings and embedder."""
    return expected(docs, crash_settings(database_url), fake_openai(base_url))


def crash_settings(database_url: str) -> Any:
    """Settings shared by the crash worker and the test's re-run (tiny chunks and batches)."""
    from tasks.settings import Settings

    return Settings(
        database_url=database_url,
        chunk_tokens=24,
        chunk_overlap_tokens=0,
        index_batch_size=2,
    )


def crash_docs(version: int = 0, count: int = 20) -> dict[str, Doc]:
    """``count`` documents of 3 paragraphs each: 3 chunks per document at 24 tokens."""
    docs = {}
    for i in range(count):
        body = "\n\n".join(
            f"Paragraph {p} of document {i} (v{version}) about tents, stoves and lamps."
            for p in range(3)
        )
        docs[f"doc:{i}"] = Doc(f"Doc {i}", body, "outdoor", float(i))
    return docs


def base_docs_for_cli() -> dict[str, Doc]:
    """Three one-chunk documents."""
    return {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(3)}
