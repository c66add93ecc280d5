"""Embedding cache in Postgres, keyed by (embedder fingerprint, content hash).

A vector depends only on the embedder (provider, model, dimension, input policy) and the exact
input text, so a rebuild with new chunk settings, a second namespace or a store migration never
pays for the same text twice. Vectors are stored as float32 bytes (``bytea``): compact and fast
to write, and exactly what pgvector and Pinecone keep anyway.

Entries no indexed chunk uses any more (edited or deleted texts) are pruned after
``EMBEDDING_CACHE_RETENTION_DAYS``, so the cache does not grow with every edit forever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
from psycopg import sql

from tasks.settings import check_identifier


class EmbeddingCache:
    """Get/put vectors by content hash on a caller-supplied connection."""

    def __init__(self, schema: str = "index_state") -> None:
        self.schema = check_identifier(schema, "schema name")
        self._table = sql.SQL("{}.embedding_cache").format(sql.Identifier(self.schema))

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

    def prune(self, conn: psycopg.Connection, older_than_days: int) -> int | None:
        """Delete entries older than ``older_than_days`` whose text no indexed chunk (of any
        namespace) has; return how many went, or ``None`` when a prune already ran in the last
        day (it reads the whole cache, so it runs at most daily; ``cache_prunes`` logs each).
        Entries still in use are kept whatever their age.
        """
        prunes = sql.SQL("{}.cache_prunes").format(sql.Identifier(self.schema))
        chunks = sql.SQL("{}.chunks").format(sql.Identifier(self.schema))
        with conn.transaction():
            conn.execute(
                "select pg_advisory_xact_lock(hashtext(%s))", (f"cache_prune:{self.schema}",)
            )
            recent = conn.execute(
                sql.SQL("select 1 from {} where pruned_at > now() - interval '1 day'").format(
                    prunes
                )
            ).fetchone()
            if recent:
                return None
            removed = conn.execute(
                sql.SQL(
                    "delete from {} c where c.created_at < now() - make_interval(days => %s) "
                    "and not exists (select 1 from {} k where k.content_hash = c.content_hash)"
                ).format(self._table, chunks),
                (older_than_days,),
            ).rowcount
            conn.execute(sql.SQL("insert into {} (removed) values (%s)").format(prunes), (removed,))
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
