"""pgvector store: one table per namespace in the warehouse, HNSW cosine index, jsonb metadata.

Table ``<VECTOR_SCHEMA>.<namespace>``::

    id text primary key, document_id text, content_hash text, text text,
    metadata jsonb, embedding vector(<dim>), written_at timestamptz

Table and schema names are allow-listed identifiers (``check_identifier``); every value, including
filter keys, is a bound parameter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from tasks.errors import VectorStoreError
from tasks.settings import check_identifier
from tasks.stores.base import (
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStore,
    check_namespace,
)
from tasks.stores.filters import Condition, parse_filter
from tasks.warehouse import LazyConnection, Warehouse

logger = logging.getLogger(__name__)

_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

#: HNSW candidate list per query never below this (pgvector's default, 40), whatever ``top_k``.
EF_SEARCH_MIN = 40
#: ``hnsw.ef_search`` per row asked: with ef_search equal to the depth, recall at that depth
#: fell to 0.979 against exact search (tests/stores/test_pgvector_recall.py, depth 200); twice
#: the depth keeps it above 0.98 and leaves a chunk-mode page of 10 at the default of 40.
EF_SEARCH_PER_ROW = 2
#: pgvector's ceiling for ``hnsw.ef_search``; deeper ``top_k`` relies on the iterative scan.
EF_SEARCH_MAX = 1000
#: Tuples an iterative scan may visit before it stops (pgvector's default is 20,000); scaled
#: with ``top_k`` so deep pages under a filter are not cut short, and capped so one query
#: cannot walk a whole large index.
MAX_SCAN_TUPLES_MIN = 20_000
MAX_SCAN_TUPLES_PER_ROW = 100
MAX_SCAN_TUPLES_MAX = 200_000


#: Rows the relaxed-order scan fetches per row a query asks for (see :meth:`PgVectorStore.query`).
RELAXED_OVERFETCH = 3


def scan_settings(top_k: int) -> dict[str, str]:
    """The HNSW settings one query of depth ``top_k`` runs with (``SET LOCAL``).

    - ``hnsw.ef_search`` at least ``EF_SEARCH_PER_ROW * top_k``: an HNSW scan returns at most
      about ef_search rows, and recall drops when ef_search is close to the depth asked.
    - ``hnsw.iterative_scan = relaxed_order`` (pgvector >= 0.8): when a filter rejects rows the
      scan continues until ``top_k`` rows pass (or ``hnsw.max_scan_tuples``), instead of
      returning the few of the first ef_search candidates that passed.
    """
    ef_search = min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, EF_SEARCH_PER_ROW * top_k))
    max_scan = min(MAX_SCAN_TUPLES_MAX, max(MAX_SCAN_TUPLES_MIN, MAX_SCAN_TUPLES_PER_ROW * top_k))
    return {
        "hnsw.ef_search": str(ef_search),
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.max_scan_tuples": str(max_scan),
    }


class PgVectorStore(VectorStore):
    """Vectors in PostgreSQL with the pgvector extension."""

    name = "pgvector"

    def __init__(self, warehouse: Warehouse, schema: str = "semantic_index") -> None:
        self.schema = check_identifier(schema, "schema name")
        self._connection = LazyConnection(warehouse, on_open=_prepare)

    @property
    def conn(self) -> psycopg.Connection:
        """The store's connection, opened on first use with pgvector types registered."""
        return self._connection.get()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def _table(self, namespace: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(check_namespace(namespace))
        )

    def _dimension_of(self, namespace: str) -> int | None:
        row = self.conn.execute(
            """
            select format_type(a.atttypid, a.atttypmod)
            from pg_attribute a
            join pg_class c on c.oid = a.attrelid
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = %s and c.relname = %s and a.attname = 'embedding'
            """,
            (self.schema, namespace),
        ).fetchone()
        if row is None:
            return None
        match = re.search(r"\((\d+)\)", row[0])
        return int(match.group(1)) if match else None

    def ensure_namespace(self, namespace: str, dimension: int) -> None:
        """Create the namespace's table and HNSW index if missing; check the dimension."""
        table = self._table(namespace)
        existing = self._dimension_of(namespace)
        if existing is not None:
            if existing != dimension:
                raise VectorStoreError(
                    f"Namespace {namespace!r} holds {existing}-dimensional vectors but the "
                    f"embedder produces {dimension}. Index into a new namespace or rebuild it "
                    "(the embedding model or its dimensions changed)."
                )
            return
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("create schema if not exists {}").format(sql.Identifier(self.schema))
            )
            self.conn.execute(
                sql.SQL(
                    """
                    create table if not exists {table} (
                        id text primary key,
                        document_id text not null,
                        content_hash text not null,
                        text text not null,
                        metadata jsonb not null default '{{}}',
                        embedding vector({dim}) not null,
                        written_at timestamptz not null default now()
                    )
                    """
                ).format(table=table, dim=sql.Literal(dimension))
            )
            self.conn.execute(
                sql.SQL(
                    "create index if not exists {} on {} using hnsw (embedding vector_cosine_ops)"
                ).format(sql.Identifier(f"{namespace}_embedding_hnsw"), table)
            )
            self.conn.execute(
                sql.SQL("create index if not exists {} on {} (document_id)").format(
                    sql.Identifier(f"{namespace}_document_id"), table
                )
            )
        logger.info("Created pgvector table %s.%s (%d dims)", self.schema, namespace, dimension)

    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace ``records`` by id in one transaction."""
        if not records:
            return 0
        expected = self._dimension_of(namespace)
        if expected is None:
            raise VectorStoreError(
                f"Namespace {namespace!r} does not exist: call ensure_namespace first."
            )
        bad = [r.id for r in records if len(r.values) != expected]
        if bad:
            raise VectorStoreError(
                f"{len(bad)} record(s) (e.g. {bad[0]!r}) do not have {expected} dimensions."
            )
        statement = sql.SQL(
            """
            insert into {table} (id, document_id, content_hash, text, metadata, embedding)
            values (%s, %s, %s, %s, %s::jsonb, %s)
            on conflict (id) do update set
                document_id = excluded.document_id,
                content_hash = excluded.content_hash,
                text = excluded.text,
                metadata = excluded.metadata,
                embedding = excluded.embedding,
                written_at = now()
            """
        ).format(table=self._table(namespace))
        rows = [
            (
                r.id,
                r.document_id,
                r.content_hash,
                r.text,
                json.dumps(r.metadata),
                np.asarray(r.values, dtype=np.float32),
            )
            for r in records
        ]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(statement, rows)
        return len(rows)

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        """Delete ``ids`` from the namespace."""
        if not ids:
            return 0
        if self._dimension_of(namespace) is None:
            return len(ids)  # the contract: how many were asked (nothing to delete here)
        self.conn.execute(
            sql.SQL("delete from {} where id = any(%s)").format(self._table(namespace)),
            (list(ids),),
        )
        return len(ids)

    def query(
        self,
        namespace: str,
        vector: Sequence[float],
        top_k: int,
        filter: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Cosine top-k with optional metadata filter, best first (HNSW with ``ef_search`` tied
        to ``top_k`` and iterative scans for filters: :func:`scan_settings`)."""
        conditions = parse_filter(filter)
        dimension = self._dimension_of(namespace)
        if dimension is None:
            return []
        if len(vector) != dimension:
            raise VectorStoreError(
                f"Query vector has {len(vector)} dimensions; "
                f"namespace {namespace!r} has {dimension}."
            )
        where, params = where_clause(conditions)
        query_vector = np.asarray(vector, dtype=np.float32)
        # relaxed_order lets the iterative scan return rows slightly out of distance order:
        # take them in a materialized CTE, then order them exactly (pgvector's documented way;
        # ``+ 0`` keeps the planner from pushing the outer ORDER BY back into the index scan).
        # With a filter the CTE takes RELAXED_OVERFETCH times the rows asked: cut at top_k, the
        # out-of-order rows lost true neighbours (filtered recall@10 0.94 on real embeddings;
        # 0.996 with 3x, at the same p95: BENCHMARKS.md). Without one the scan never iterates
        # past its first ef_search candidates, which come in order (unfiltered recall@10 0.998
        # at 1x, 0.999 at 3x), so the 3x would only triple the rows read and sorted.
        depth = top_k * RELAXED_OVERFETCH if conditions else top_k
        statement = sql.SQL(
            """
            with relaxed as materialized (
                select id, document_id, text, metadata, embedding <=> %s as distance
                from {table}
                where {where}
                order by embedding <=> %s
                limit %s
            )
            select id, document_id, text, metadata, 1 - distance as score
            from relaxed
            order by distance + 0, id
            limit %s
            """
        ).format(table=self._table(namespace), where=where)
        args = (query_vector, *params, query_vector, depth, top_k)
        with self.conn.transaction():
            scan = scan_settings(depth)
            self.conn.execute(  # one round trip for the three SET LOCALs
                "select " + ", ".join(["set_config(%s, %s, true)"] * len(scan)),
                [x for pair in scan.items() for x in pair],
            )
            rows = self.conn.execute(statement, args).fetchall()
            if conditions and len(rows) < top_k:
                # The iterative scan gave up (hnsw.max_scan_tuples) before top_k rows passed a
                # very selective filter. Rows that pass may still exist: an exact scan of the
                # filtered rows finds them. It reads the whole table, so it only runs when the
                # index scan came back short.
                self.conn.execute("set local enable_indexscan = off")
                rows = self.conn.execute(statement, args).fetchall()
        return [
            SearchHit(id=r[0], document_id=r[1], text=r[2], metadata=r[3], score=float(r[4]))
            for r in rows
        ]

    def count(self, namespace: str) -> int:
        """Rows in the namespace's table."""
        if self._dimension_of(namespace) is None:
            return 0
        row = self.conn.execute(
            sql.SQL("select count(*) from {}").format(self._table(namespace))
        ).fetchone()
        return int(row[0]) if row else 0

    def update_metadata(self, namespace: str, updates: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Replace metadata by id; vectors and text stay as they are."""
        if not updates or self._dimension_of(namespace) is None:
            return 0
        statement = sql.SQL(
            "update {} set metadata = %s::jsonb, written_at = now() where id = %s"
        ).format(self._table(namespace))
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(statement, [(json.dumps(m), i) for i, m in updates])
        return len(updates)

    def drop_namespace(self, namespace: str) -> None:
        """Drop the namespace's table."""
        self.conn.execute(sql.SQL("drop table if exists {}").format(self._table(namespace)))

    def content_hashes(self, namespace: str) -> dict[str, str]:
        """``{id: content_hash}`` for the whole namespace."""
        if self._dimension_of(namespace) is None:
            return {}
        rows = self.conn.execute(
            sql.SQL("select id, content_hash from {}").format(self._table(namespace))
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def scan(self, namespace: str, page_size: int = 500) -> Iterator[list[StoredRecord]]:
        """Every row's id, content hash, metadata and ``vector_dims``, in id order (keyset pages:
        no offset scans, and rows written meanwhile never shift a page)."""
        if self._dimension_of(namespace) is None:
            return
        statement = sql.SQL(
            "select id, content_hash, metadata, vector_dims(embedding) from {} "
            "where id > %s order by id limit %s"
        ).format(self._table(namespace))
        after = ""
        while True:
            rows = self.conn.execute(statement, (after, page_size)).fetchall()
            if not rows:
                return
            yield [StoredRecord(r[0], r[1], r[2], int(r[3])) for r in rows]
            after = rows[-1][0]


def _prepare(conn: psycopg.Connection) -> None:
    """Make sure the extension exists and psycopg knows the ``vector`` type."""
    conn.execute("create extension if not exists vector")
    register_vector(conn)


def where_clause(conditions: list[Condition]) -> tuple[sql.Composable, list[Any]]:
    """SQL for ``conditions`` (AND) and its parameters; keys are bound, never interpolated."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for c in conditions:
        if c.op in ("$eq", "$in"):
            values = c.value if isinstance(c.value, list) else [c.value]
            ors = []
            for v in values:
                # Scalar field equal to v, or list field containing v.
                ors.append(sql.SQL("(metadata @> %s::jsonb or metadata @> %s::jsonb)"))
                params.extend([json.dumps({c.key: v}), json.dumps({c.key: [v]})])
            parts.append(sql.SQL("(") + sql.SQL(" or ").join(ors) + sql.SQL(")"))
        else:
            op = sql.SQL(_RANGE_SQL[c.op])
            if isinstance(c.value, str):
                parts.append(
                    sql.SQL(
                        "(case when jsonb_typeof(metadata->%s) = 'string' "
                        "then metadata->>%s end) {} %s"
                    ).format(op)
                )
            else:
                parts.append(
                    sql.SQL(
                        "(case when jsonb_typeof(metadata->%s) = 'number' "
                        "then (metadata->>%s)::numeric end) {} %s"
                    ).format(op)
                )
            params.extend([c.key, c.key, c.value])
    if not parts:
        return sql.SQL("true"), params
    return sql.SQL(" and ").join(parts), params
