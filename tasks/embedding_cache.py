"""Embedding cache in Postgres, keyed by (embedder fingerprint, content hash).

A vector depends only on the embedder (provider, model, dimension, input policy) and the exact
input text, so a rebuild with new chunk settings, a second namespace or a store migration never
pays for the same text twice. Vectors are stored as float32 bytes (``bytea``): compact and fast
to write, and exactly what pgvector and Pinecone keep anyway.
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
