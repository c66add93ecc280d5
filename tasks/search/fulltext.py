"""Postgres full-text search over chunk text: the keyword side of hybrid search, and snippets.

Where chunk text lives is decided in one place, :func:`chunk_text_table`: with pgvector, the
namespace's table (``<VECTOR_SCHEMA>.<namespace>``, column ``text``); with Pinecone, whose
vectors live outside Postgres, the indexing ledger's rows of the namespace's written chunks
(issue 4; the ledger says where: :func:`tasks.index.ledger.written_text_rows`). Hybrid search,
snippets and ``GET /documents/{id}`` all read through it.

The full-text index is an expression GIN index on ``to_tsvector(<config>, text)``, created here
idempotently (``create index if not exists``) because the table belongs to the indexer. Queries
repeat exactly the indexed expression so the planner can use it.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from tasks.index.ledger import written_text_rows
from tasks.settings import Settings, check_identifier
from tasks.stores.base import SearchHit
from tasks.stores.filters import Condition
from tasks.stores.pgvector import where_clause as filter_sql
from tasks.warehouse import LazyConnection, Warehouse

logger = logging.getLogger(__name__)

#: Sentinels ts_headline wraps matches in; replaced by ``<mark>`` after HTML-escaping the text.
_START, _STOP = "\x02", "\x03"
_HEADLINE_OPTIONS = (
    f'StartSel="{_START}", StopSel="{_STOP}", MaxWords=40, MinWords=18, ShortWord=2, '
    'MaxFragments=2, FragmentDelimiter=" … "'
)


@dataclass(frozen=True)
class ChunkTextTable:
    """A table holding one row per chunk: id, document id, text and jsonb metadata."""

    schema: str
    table: str
    id_column: str = "id"
    document_id_column: str = "document_id"
    text_column: str = "text"
    metadata_column: str = "metadata"
    #: ``(column, value)`` equalities selecting this namespace's rows in a shared table.
    scope: tuple[tuple[str, str], ...] = ()

    def ident(self) -> sql.Composed:
        """``schema.table`` as a safely quoted identifier."""
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))

    def scope_sql(self) -> tuple[sql.Composable, list[str]]:
        """``and col = %s ...`` for :attr:`scope` (empty when the table is the namespace's own)."""
        parts = [sql.SQL(" and {} = %s").format(sql.Identifier(c)) for c, _ in self.scope]
        return sql.Composed(parts), [v for _, v in self.scope]

    @property
    def index_name(self) -> str:
        """Name of the full-text GIN index (within Postgres' 63-character limit)."""
        return f"{self.table[:50]}_text_fts"


def chunk_text_table(settings: Settings, namespace: str) -> ChunkTextTable:
    """Where the chunk text of physical ``namespace`` lives.

    pgvector: the namespace's own table. Pinecone: the indexing ledger's rows of the namespace's
    written chunks (one table for every namespace, :func:`tasks.index.ledger.written_text_rows`).
    """
    check_identifier(namespace, "namespace")
    if settings.vector_store == "pinecone":
        rows = written_text_rows(settings.index_state_schema, namespace)
        return ChunkTextTable(
            schema=rows.schema,
            table=rows.table,
            id_column=rows.id_column,
            document_id_column=rows.document_id_column,
            text_column=rows.text_column,
            metadata_column=rows.metadata_column,
            scope=rows.scope,
        )
    return ChunkTextTable(
        schema=check_identifier(settings.vector_schema, "schema name"), table=namespace
    )


def _match_query(config: sql.Composable) -> sql.Composed:
    """SQL for the keyword side's query of the bound query text (``%s``): every word must occur.

    ``websearch_to_tsquery`` syntax: words are ANDed, ``"quoted phrases"``, ``or``, ``-word``.
    AND, not OR, on purpose: with OR nearly every chunk matches some word of a natural-language
    query and that noise, fused with equal weight, pulled the demo's nDCG@10 from 0.92 to 0.75.
    With AND the keyword side only speaks when the chunk holds the exact terms (codes, names,
    error messages), which is what hybrid mode is for; paraphrases rank as in vector mode.
    """
    return sql.SQL("websearch_to_tsquery({cfg}, %s)").format(cfg=config)


def _tsquery(config: sql.Composable) -> sql.Composed:
    """SQL for an OR-query of the lexemes of the bound query text (``%s``), for snippets.

    Highlighting marks every query word found. Lexemes are quoted one by one and the rare one
    holding a quote or backslash is dropped, so no user text is ever parsed as tsquery syntax.
    """
    return sql.SQL(
        "(select coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery "
        "from unnest(to_tsvector({cfg}, %s)) where lexeme !~ '[\\\\'']')"
    ).format(cfg=config)


class FullTextSearch:
    """Keyword search, snippets and chunk lookup on one connection (not thread-safe: pool it)."""

    def __init__(
        self, warehouse: Warehouse, text_config: str = "english", statement_timeout_ms: int = 0
    ) -> None:
        self._config = sql.SQL("{}::regconfig").format(
            sql.Literal(check_identifier(text_config, "text search configuration"))
        )
        self._timeout_ms = statement_timeout_ms
        self._connection = LazyConnection(warehouse, on_open=self._prepare)
        self._indexed: set[tuple[str, str]] = set()

    def _prepare(self, conn: psycopg.Connection) -> None:
        if self._timeout_ms:
            conn.execute(
                "select set_config('statement_timeout', %s, false)", (str(self._timeout_ms),)
            )

    @property
    def conn(self) -> psycopg.Connection:
        """The connection, opened on first use (autocommit, statement timeout applied)."""
        return self._connection.get()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def table_exists(self, table: ChunkTextTable) -> bool:
        """Whether ``table`` exists (an unindexed namespace has none)."""
        row = self.conn.execute("select to_regclass(%s)", (f"{table.schema}.{table.table}",))
        found = row.fetchone()
        return bool(found and found[0])

    def ensure_index(self, table: ChunkTextTable) -> bool:
        """Create the GIN index on the text if it is missing; returns whether the table exists.

        Checked on every call (a catalog lookup) rather than cached, because a rebuild may drop
        and recreate the table underneath a running service.
        """
        if not self.table_exists(table):
            return False
        key = (table.schema, table.table)
        exists = self.conn.execute(
            "select to_regclass(%s)", (f"{table.schema}.{table.index_name}",)
        ).fetchone()
        if exists and exists[0]:
            self._indexed.add(key)
            return True
        statement = sql.SQL(
            "create index if not exists {name} on {table} using gin ({tsv})"
        ).format(
            name=sql.Identifier(table.index_name),
            table=table.ident(),
            tsv=self._tsvector(table),
        )
        # Another process creating it at the same moment is what we wanted anyway.
        with contextlib.suppress(pg_errors.UniqueViolation, pg_errors.DuplicateTable):
            self.conn.execute(statement)
        logger.info("Created full-text index %s.%s", table.schema, table.index_name)
        self._indexed.add(key)
        return True

    def _tsvector(self, table: ChunkTextTable) -> sql.Composed:
        return sql.SQL("to_tsvector({cfg}, {text})").format(
            cfg=self._config, text=sql.Identifier(table.text_column)
        )

    def search(
        self,
        table: ChunkTextTable,
        query: str,
        top_k: int,
        conditions: Sequence[Condition] = (),
    ) -> list[SearchHit]:
        """Chunks containing every word of ``query``, best ``ts_rank_cd`` first, filtered."""
        if not self.ensure_index(table):
            return []
        where, params = filter_sql(list(conditions))
        scope, scope_params = table.scope_sql()
        tsv = self._tsvector(table)
        statement = sql.SQL(
            """
            select {id}, {doc}, {text}, {meta}, ts_rank_cd({tsv}, q.q, 1) as score
            from {table}, {tsquery} as q(q)
            where {tsv} @@ q.q and {where}{scope}
            order by score desc, {id}
            limit %s
            """
        ).format(
            scope=scope,
            id=sql.Identifier(table.id_column),
            doc=sql.Identifier(table.document_id_column),
            text=sql.Identifier(table.text_column),
            meta=sql.Identifier(table.metadata_column),
            tsv=tsv,
            table=table.ident(),
            tsquery=_match_query(self._config),
            where=where,
        )
        rows = self.conn.execute(statement, (query, *params, *scope_params, top_k)).fetchall()
        return [
            SearchHit(id=r[0], document_id=r[1], text=r[2], metadata=r[3], score=float(r[4]))
            for r in rows
        ]

    def headlines(self, texts: Sequence[str], query: str) -> list[str]:
        """Snippets of ``texts`` around the words of ``query``, HTML-escaped, matches in <mark>."""
        if not texts:
            return []
        statement = sql.SQL(
            """
            select ts_headline({cfg}, t.body, q.q, %s)
            from unnest(%s::text[]) with ordinality as t(body, n), {tsquery} as q(q)
            order by t.n
            """
        ).format(cfg=self._config, tsquery=_tsquery(self._config))
        rows = self.conn.execute(
            statement, (_HEADLINE_OPTIONS, [_clean(t) for t in texts], query)
        ).fetchall()
        return [render_headline(r[0]) for r in rows]

    def document_chunks(self, table: ChunkTextTable, document_id: str) -> list[dict[str, Any]]:
        """Every chunk of ``document_id`` in position order: ``{id, text, metadata}``."""
        if not self.table_exists(table):
            return []
        scope, scope_params = table.scope_sql()
        statement = sql.SQL(
            """
            select {id}, {text}, {meta}
            from {table}
            where {doc} = %s{scope}
            order by coalesce(({meta}->>'chunk_position')::int, 0), {id}
            """
        ).format(
            scope=scope,
            id=sql.Identifier(table.id_column),
            text=sql.Identifier(table.text_column),
            meta=sql.Identifier(table.metadata_column),
            doc=sql.Identifier(table.document_id_column),
            table=table.ident(),
        )
        rows = self.conn.execute(statement, (document_id, *scope_params)).fetchall()
        return [{"id": r[0], "text": r[1], "metadata": r[2]} for r in rows]


def _clean(text: str) -> str:
    """Text without NUL (Postgres text cannot hold it) or our sentinel characters."""
    return text.replace("\x00", "").replace(_START, "").replace(_STOP, "")


def render_headline(raw: str) -> str:
    """A ts_headline result as one line of HTML-escaped text with ``<mark>`` around matches.

    The parser splits codes like ``ZX-6305-QR`` into parts and marks each; marks separated by
    nothing or one joining character are merged into one.
    """
    flat = " ".join(raw.split())
    merged = _ADJACENT_MARKS.sub(r"\1", flat)
    return html.escape(merged, quote=False).replace(_START, "<mark>").replace(_STOP, "</mark>")


_ADJACENT_MARKS = re.compile(f"{_STOP}([-./_:]?){_START}")
