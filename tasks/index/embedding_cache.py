"""Embedding cache in Postgres, keyed by (embedder fingerprint, content hash).

A vector depends only on the embedder (provider, model, dimension, input policy) and the exact
input text, so a rebuild with new chunk settings, a second namespace or a store migration never
pays for the same text twice. Vectors are stored as float32 bytes (``bytea``): compact and fast
to write, and exactly what pgvector and Pinecone keep anyway.

Entries no indexed chunk uses any more (edited or deleted texts) are pruned after
``EMBEDDING_CACHE_RETENTION_DAYS``, so the cache does not grow with every edit forever; which
texts are in use is the ledger's to say (:meth:`tasks.index.ledger.Ledger.hashes_in_use`).

Tables, in ``<INDEX_STATE_SCHEMA>`` beside the ledger's and created by :meth:`EmbeddingCache.setup`:
``embedding_cache (fingerprint, content_hash, embedding, created_at)`` and ``cache_prunes
(pruned_at, removed)``, one row per prune.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
from psycopg import sql

from tasks.index.ledger import setup_schema
from tasks.settings import check_identifier


class EmbeddingCache:
    """Get/put vectors by content hash on a caller-supplied connection."""

    def __init__(self, schema: str = "index_state") -> None:
        self.schema = check_identifier(schema, "schema name")
        self._table = sql.SQL("{}.embedding_cache").format(sql.Identifier(self.schema))
        self._prunes = sql.SQL("{}.cache_prunes").format(sql.Identifier(self.schema))

    def setup(self, conn: psycopg.Connection) -> None:
        """Create the schema and the cache's tables if missing (serialised across processes)."""
        setup_schema(
            conn,
            [
                sql.SQL("create schema if not exists {}").format(sql.Identifier(self.schema)),
                sql.SQL(
                    """
                    create table if not exists {} (
                        fingerprint text not null,
                        content_hash text not null,
                        embedding bytea not null,
                        created_at timestamptz not null default now(),
                        primary key (fingerprint, content_hash)
                    )
                    """
                ).format(self._table),
                sql.SQL(
                    """
                    create table if not exists {} (
                        pruned_at timestamptz not null default now(),
                        removed int not null
                    )
                    """
                ).format(self._prunes),
            ],
        )

    def get(
        self, conn: psycopg.Connection, fingerprint: str, hashes: Sequence[str]
    ) -> dict[str, list[float]]:
        """Cached vectors among ``hashes``."""
        if not hashes:
            return {}
        out: dict[str, list[float]] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 5000):
            rows = conn.execute(
                sql.SQL(
                    "select content_hash, embedding from {} "
                    "where fingerprint = %s and content_hash = any(%s)"
                ).format(self._table),
                (fingerprint, unique[start : start + 5000]),
            ).fetchall()
            for content_hash, blob in rows:
                out[content_hash] = np.frombuffer(blob, dtype=np.float32).tolist()
        return out

    def put(
        self, conn: psycopg.Connection, fingerprint: str, vectors: Mapping[str, Sequence[float]]
    ) -> None:
        """Store vectors (existing entries are kept: same key, same vector)."""
        if not vectors:
            return
        statement = sql.SQL(
            "insert into {} (fingerprint, content_hash, embedding) values (%s, %s, %s) "
            "on conflict do nothing"
        ).format(self._table)
        rows = [
            (fingerprint, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()
        ]
        with conn.cursor() as cur:
            cur.executemany(statement, rows)

    def prune(
        self, conn: psycopg.Connection, older_than_days: int, in_use: sql.Composable
    ) -> int | None:
        """Delete entries older than ``older_than_days`` whose text no indexed chunk (of any
        namespace) has; return how many went, or ``None`` when a prune already ran in the last
        day (it reads the whole cache, so it runs at most daily; ``cache_prunes`` logs each).
        Entries still in use are kept whatever their age.

        ``in_use`` is a subquery of the content hashes in use (the ledger's
        :meth:`~tasks.index.ledger.Ledger.hashes_in_use`), so the check and the delete are one
        statement.
        """
        with conn.transaction():
            conn.execute(
                "select pg_advisory_xact_lock(hashtext(%s))", (f"cache_prune:{self.schema}",)
            )
            recent = conn.execute(
                sql.SQL("select 1 from {} where pruned_at > now() - interval '1 day'").format(
                    self._prunes
                )
            ).fetchone()
            if recent:
                return None
            removed = conn.execute(
                sql.SQL(
                    "delete from {} c where c.created_at < now() - make_interval(days => %s) "
                    "and not exists (select 1 from ({}) k (content_hash) "
                    "where k.content_hash = c.content_hash)"
                ).format(self._table, in_use),
                (older_than_days,),
            ).rowcount
            conn.execute(
                sql.SQL("insert into {} (removed) values (%s)").format(self._prunes), (removed,)
            )
        return removed

    def count(self, conn: psycopg.Connection, fingerprint: str | None = None) -> int:
        """Entries in the cache (for one fingerprint, or all)."""
        if fingerprint is None:
            row = conn.execute(sql.SQL("select count(*) from {}").format(self._table)).fetchone()
        else:
            row = conn.execute(
                sql.SQL("select count(*) from {} where fingerprint = %s").format(self._table),
                (fingerprint,),
            ).fetchone()
        return int(row[0]) if row else 0
