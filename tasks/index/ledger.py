"""The indexing ledger: what each physical namespace of the vector store holds, in Postgres.

Tables in ``<INDEX_STATE_SCHEMA>`` (default ``index_state``); see docs/indexing.md:

- ``chunks``: one row per chunk per physical namespace: ``namespace, chunk_id, logical_namespace,
  document_id, position, content_hash, metadata_hash, text, metadata, tokens, fingerprint,
  state ('pending' | 'written'), written_at``. A row is ``written`` only after the store
  acknowledged the batch that carried it; ``pending`` means "may or may not be in the store".
- ``namespaces``: the registry of physical namespaces per logical one: ``physical, logical,
  fingerprint, state ('building' | 'serving' | 'retired'), created_at, switched_at``.
- ``documents``: one row per indexed document per physical namespace: ``namespace,
  document_id, doc_hash, chunks``. ``doc_hash`` covers everything the document's chunks are made
  of (text, title, url, metadata, chunker config, index fingerprint); a row is recorded only once
  every chunk of the document is ``written`` (none rejected), and removed before any of them is
  written again, so a run skips a document whose hash matches without chunking it
  (docs/indexing.md "Skipping unchanged documents").
- ``runs``: one row per indexing run, with counts, tokens and estimated cost, the versions that
  made it (:mod:`tasks.ops.versions`: ``package_version, git_commit, sources_sha256,
  dbt_manifest_hash, dbt_project_version``; the index fingerprint is ``fingerprint``), its
  ``index_config`` (embedder and chunker settings), ``document_changes`` (true: the run records
  its changes in ``run_documents``) and ``document_count`` (documents with chunks in the
  namespace when the run ended, kept from the previous run's count plus this run's changes).
  ``documents`` (jsonb ``{document id: digest}``) is the snapshot runs before ``run_documents``
  wrote; it is kept for those rows (``semantic-index diff`` of two of them) and no longer
  written: it was an aggregate over the whole namespace at every run.
- ``run_documents``: what each run changed, one row per document it added, changed or deleted in
  its physical namespace: ``run_id, document_id, change ('added' | 'changed' | 'deleted')``.
  A document is *in* a namespace while it has chunks there (one whose chunks are all dead
  letters is not); a run that changes nothing writes no row. ``semantic-index diff`` composes
  the rows of the runs between two runs (:meth:`Ledger.net_changes`).
- ``dead_letters``: chunks the embedding provider rejected (a retry cannot fix them; see
  docs/indexing.md "Dead letters"): ``namespace, chunk_id, logical_namespace, document_id,
  content_hash, error_class, message, run_id, first_seen, last_seen``. A row lives as long as its
  chunk is desired and rejected: every run retries it, and a run that embeds it (or no longer
  wants it) removes the row.

The embedding cache keeps its own tables in the same schema (:mod:`tasks.index.embedding_cache`
creates them through :func:`setup_schema`).

This module is the only code that knows these tables. Readers outside the indexer go through its
read-only functions: :func:`serving_physical` (which physical namespace serves a logical one),
:func:`chunk_texts` (Pinecone keeps no text; hybrid search needs it in Postgres) and
:func:`written_text_rows` (where full-text search finds the texts of written chunks).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tasks.errors import PipelineError
from tasks.index.chunking import Chunk
from tasks.settings import check_identifier
from tasks.warehouse import LazyConnection, Warehouse, advisory_lock

logger = logging.getLogger(__name__)

PENDING = "pending"
WRITTEN = "written"


class IndexBusy(PipelineError):
    """Another indexing run holds the namespace."""

    retryable = True


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one chunk in one physical namespace."""

    chunk_id: str
    document_id: str
    content_hash: str
    metadata_hash: str
    fingerprint: str
    state: str


@dataclass(frozen=True)
class NamespaceEntry:
    """One physical namespace of a logical one."""

    physical: str
    logical: str
    fingerprint: str
    state: str


@dataclass(frozen=True)
class DeadLetter:
    """A chunk the embedding provider rejected, as the ``dead_letters`` table keeps it."""

    namespace: str
    chunk_id: str
    logical_namespace: str
    document_id: str
    content_hash: str
    error_class: str
    message: str
    run_id: int | None
    first_seen: datetime
    last_seen: datetime


#: Columns of ``runs`` added after its first release (issue 17 item 5), ``(name, type)``; the
#: first five are the :class:`tasks.ops.versions.RunVersions` fields of the same name.
RUN_VERSION_COLUMNS = (
    ("package_version", "text"),
    ("git_commit", "text"),
    ("sources_sha256", "text"),
    ("dbt_manifest_hash", "text"),
    ("dbt_project_version", "text"),
    ("index_config", "jsonb"),
    ("documents", "jsonb"),
    ("document_changes", "boolean"),
    ("document_count", "int"),
)

#: The version columns of ``runs`` that :meth:`Ledger.start_run` fills from ``versions``.
VERSION_COLUMNS = tuple(name for name, _ in RUN_VERSION_COLUMNS[:5])


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``, as :meth:`Ledger.run` reads it (``semantic-index diff``)."""

    run_id: int
    logical_namespace: str
    namespace: str
    provider: str
    model: str
    fingerprint: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    chunks: int | None
    embedded: int | None
    deleted: int | None
    input_tokens: int | None
    estimated_cost_usd: float | None
    #: The :data:`VERSION_COLUMNS` by name (``None`` in rows written before they existed).
    versions: dict[str, str | None]
    index_config: dict[str, Any] | None
    #: ``{document id: digest}`` when the run ended: the snapshot of runs recorded before
    #: ``run_documents`` existed (``None`` for newer runs, and for rows older than snapshots).
    documents: dict[str, str] | None = None
    #: The run records its document changes in ``run_documents``.
    document_changes: bool = False
    #: Documents with chunks in the namespace when the run ended (``None``: not known).
    document_count: int | None = None


def _ddl(schema: str) -> list[sql.Composed]:
    s = sql.Identifier(schema)
    return [
        sql.SQL("create schema if not exists {}").format(s),
        sql.SQL(
            """
            create table if not exists {}.chunks (
                namespace text not null,
                chunk_id text not null,
                logical_namespace text not null,
                document_id text not null,
                position int not null,
                content_hash text not null,
                metadata_hash text not null,
                text text not null,
                metadata jsonb not null,
                tokens int not null default 0,
                fingerprint text not null,
                state text not null check (state in ('pending', 'written')),
                written_at timestamptz,
                primary key (namespace, chunk_id)
            )
            """
        ).format(s),
        sql.SQL(
            "create index if not exists chunks_document on {}.chunks (namespace, document_id)"
        ).format(s),
        sql.SQL(
            """
            create table if not exists {}.documents (
                namespace text not null,
                document_id text not null,
                doc_hash text not null,
                chunks int not null,
                primary key (namespace, document_id)
            )
            """
        ).format(s),
        sql.SQL(
            """
            create table if not exists {}.namespaces (
                physical text primary key,
                logical text not null,
                fingerprint text not null,
                state text not null check (state in ('building', 'serving', 'retired')),
                created_at timestamptz not null default now(),
                switched_at timestamptz
            )
            """
        ).format(s),
        sql.SQL(
            "create unique index if not exists namespaces_one_serving on {}.namespaces (logical) "
            "where state = 'serving'"
        ).format(s),
        sql.SQL(
            """
            create table if not exists {}.runs (
                run_id bigserial primary key,
                logical_namespace text not null,
                namespace text not null,
                provider text not null,
                model text not null,
                fingerprint text not null,
                dry_run boolean not null,
                status text not null,
                started_at timestamptz not null default now(),
                finished_at timestamptz,
                chunks int,
                embedded int,
                cache_hits int,
                metadata_updated int,
                deleted int,
                requests int,
                input_tokens bigint,
                estimated_cost_usd numeric(20, 12),
                switched boolean,
                error text
            )
            """
        ).format(s),
        sql.SQL("alter table {}.runs add column if not exists dead_letters int").format(s),
        *[
            sql.SQL("alter table {}.runs add column if not exists {} {}").format(
                s, sql.Identifier(column), sql.SQL(kind)
            )
            for column, kind in RUN_VERSION_COLUMNS
        ],
        sql.SQL(
            """
            create table if not exists {}.dead_letters (
                namespace text not null,
                chunk_id text not null,
                logical_namespace text not null,
                document_id text not null,
                content_hash text not null,
                error_class text not null,
                message text not null,
                run_id bigint,
                first_seen timestamptz not null default now(),
                last_seen timestamptz not null default now(),
                primary key (namespace, chunk_id)
            )
            """
        ).format(s),
        sql.SQL(
            """
            create table if not exists {}.run_documents (
                run_id bigint not null,
                document_id text not null,
                change text not null check (change in ('added', 'changed', 'deleted')),
                primary key (run_id, document_id)
            )
            """
        ).format(s),
    ]


def setup_schema(conn: psycopg.Connection, statements: Sequence[sql.Composed]) -> None:
    """Run ``statements`` (``create ... if not exists``) in one transaction, serialised across
    processes: two runs creating the same schema or table at once would fail on a unique index of
    the catalog."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('index_state_ddl'))")
        for statement in statements:
            conn.execute(statement)


class Ledger:
    """Reads and writes the ledger tables on one autocommit connection."""

    def __init__(self, warehouse: Warehouse, schema: str = "index_state") -> None:
        self.schema = check_identifier(schema, "schema name")
        self._connection = LazyConnection(warehouse)

    @property
    def conn(self) -> psycopg.Connection:
        """The ledger's connection (autocommit; multi-statement writes use transactions)."""
        return self._connection.get()

    def close(self) -> None:
        """Close the connection (releases any advisory lock)."""
        self._connection.close()

    def _t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def setup(self) -> None:
        """Create the schema and tables if missing (serialised across processes)."""
        setup_schema(self.conn, _ddl(self.schema))

    @contextmanager
    def lock(self, logical: str, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the per-logical-namespace run lock (two runs on one namespace would race),
        waiting up to ``wait_s`` seconds for a run that holds it (``INDEX_LOCK_WAIT_S``).

        A run killed while holding it releases it when PostgreSQL notices its session is gone,
        which can take a moment: the wait also covers that.

        Raises:
            IndexBusy: another process kept indexing ``logical`` for all of ``wait_s``.
        """
        key = f"index:{self.schema}:{logical}"

        def busy(holders: str) -> IndexBusy:
            return IndexBusy(
                f"Another indexing run is working on namespace {logical!r} ({holders}); it "
                f"still held the lock after {wait_s:g} s (INDEX_LOCK_WAIT_S). Let it finish, "
                "then run again."
            )

        with advisory_lock(self.conn, key, wait_s, busy):
            yield

    # --- chunks ---

    def entries(
        self, namespace: str, document_ids: Sequence[str] | None = None
    ) -> dict[str, LedgerEntry]:
        """The ledger rows of a physical namespace (all, or those of ``document_ids``), by
        chunk id."""
        where: sql.Composable = sql.SQL("namespace = %s")
        params: list[Any] = [namespace]
        if document_ids is not None:
            where += sql.SQL(" and document_id = any(%s)")
            params.append(list(document_ids))
        rows = self.conn.execute(
            sql.SQL(
                "select chunk_id, document_id, content_hash, metadata_hash, fingerprint, state "
                "from {} where {}"
            ).format(self._t("chunks"), where),
            params,
        ).fetchall()
        return {r[0]: LedgerEntry(*r) for r in rows}

    def chunk_count(self, namespace: str) -> int:
        """How many ledger rows a physical namespace has (any state)."""
        row = self.conn.execute(
            sql.SQL("select count(*) from {} where namespace = %s").format(self._t("chunks")),
            (namespace,),
        ).fetchone()
        return int(row[0]) if row else 0

    def known(self, namespace: str, chunk_ids: Sequence[str]) -> set[str]:
        """Those of ``chunk_ids`` the ledger has a row for."""
        rows = self.conn.execute(
            sql.SQL("select chunk_id from {} where namespace = %s and chunk_id = any(%s)").format(
                self._t("chunks")
            ),
            (namespace, list(chunk_ids)),
        ).fetchall()
        return {r[0] for r in rows}

    def written_sample(self, namespace: str) -> str | None:
        """The content hash of one ``written`` chunk of a namespace (a validation probe)."""
        row = self.conn.execute(
            sql.SQL(
                "select content_hash from {} where namespace = %s and state = 'written' limit 1"
            ).format(self._t("chunks")),
            (namespace,),
        ).fetchone()
        return str(row[0]) if row else None

    def orphan_chunks(self, namespace: str, relation: sql.Composable, id_column: str) -> list[str]:
        """Chunk ids of a namespace whose document is no longer in ``relation`` (the documents
        model): the set difference in SQL, not in memory. A document id is compared as text
        (``id::text``), the way the indexer records it."""
        rows = self.conn.execute(self._orphans("c.chunk_id", relation, id_column), (namespace,))
        return [r[0] for r in rows.fetchall()]

    def count_orphan_chunks(self, namespace: str, relation: sql.Composable, id_column: str) -> int:
        """How many :meth:`orphan_chunks` a namespace has."""
        row = self.conn.execute(
            self._orphans("count(*)", relation, id_column), (namespace,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _orphans(self, what: str, relation: sql.Composable, id_column: str) -> sql.Composed:
        return sql.SQL(
            "select {what} from {chunks} c where c.namespace = %s and not exists "
            "(select 1 from {relation} d where d.{id}::text = c.document_id)"
        ).format(
            what=sql.SQL(what),
            chunks=self._t("chunks"),
            relation=relation,
            id=sql.Identifier(id_column),
        )

    def chunks(self, namespace: str, ids: Sequence[str] | None = None) -> dict[str, Chunk]:
        """The chunks the ledger holds for a physical namespace (all, or those of ``ids``), with
        text and metadata: what the index doctor compares with the store and re-writes."""
        where: sql.Composable = sql.SQL("namespace = %s")
        params: list[Any] = [namespace]
        if ids is not None:
            where += sql.SQL(" and chunk_id = any(%s)")
            params.append(list(ids))
        rows = self.conn.execute(
            sql.SQL(
                "select chunk_id, document_id, position, text, metadata, content_hash, "
                "metadata_hash, tokens from {} where {}"
            ).format(self._t("chunks"), where),
            params,
        ).fetchall()
        return {r[0]: Chunk(*r) for r in rows}

    def mark_pending(
        self, namespace: str, logical: str, fingerprint: str, chunks: Sequence[Chunk]
    ) -> None:
        """Record that ``chunks`` are about to be written (state ``pending``)."""
        self._upsert(namespace, logical, fingerprint, chunks, PENDING)

    def mark_written(
        self, namespace: str, logical: str, fingerprint: str, chunks: Sequence[Chunk]
    ) -> None:
        """Record that the store acknowledged ``chunks`` (state ``written``).

        Rows already holding exactly these chunks (the ``pending`` rows written just before the
        batch went out) only change state, in one statement; any other is upserted whole.
        """
        if not chunks:
            return
        with self.conn.transaction():
            done = self.conn.execute(
                sql.SQL(
                    """
                    update {} t set state = 'written', written_at = now()
                    from unnest(%s::text[], %s::text[], %s::text[]) as u(id, content, meta)
                    where t.namespace = %s and t.chunk_id = u.id and t.content_hash = u.content
                      and t.metadata_hash = u.meta and t.fingerprint = %s
                      and t.logical_namespace = %s
                    returning t.chunk_id
                    """
                ).format(self._t("chunks")),
                (
                    [c.id for c in chunks],
                    [c.content_hash for c in chunks],
                    [c.metadata_hash for c in chunks],
                    namespace,
                    fingerprint,
                    logical,
                ),
            ).fetchall()
            if len(done) < len(chunks):
                updated = {r[0] for r in done}
                rest = [c for c in chunks if c.id not in updated]
                self._upsert(namespace, logical, fingerprint, rest, WRITTEN)

    def _upsert(
        self,
        namespace: str,
        logical: str,
        fingerprint: str,
        chunks: Sequence[Chunk],
        state: str,
    ) -> None:
        if not chunks:
            return
        # One statement over arrays (unnest) instead of one execution per row: the ledger is
        # written for every batch of a run, twice.
        statement = sql.SQL(
            """
            insert into {} (namespace, chunk_id, logical_namespace, document_id, position,
                            content_hash, metadata_hash, text, metadata, tokens, fingerprint,
                            state, written_at)
            select %s, u.chunk_id, %s, u.document_id, u.position, u.content_hash,
                   u.metadata_hash, u.text, u.metadata::jsonb, u.tokens, %s, %s,
                   case when %s = 'written' then now() end
            from unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[],
                        %s::text[], %s::int[])
                 as u(chunk_id, document_id, position, content_hash, metadata_hash, text,
                      metadata, tokens)
            on conflict (namespace, chunk_id) do update set
                logical_namespace = excluded.logical_namespace,
                document_id = excluded.document_id,
                position = excluded.position,
                content_hash = excluded.content_hash,
                metadata_hash = excluded.metadata_hash,
                text = excluded.text,
                metadata = excluded.metadata,
                tokens = excluded.tokens,
                fingerprint = excluded.fingerprint,
                state = excluded.state,
                written_at = coalesce(excluded.written_at, {}.written_at)
            """
        ).format(self._t("chunks"), sql.Identifier("chunks"))
        self.conn.execute(
            statement,
            (
                namespace,
                logical,
                fingerprint,
                state,
                state,
                [c.id for c in chunks],
                [c.document_id for c in chunks],
                [c.position for c in chunks],
                [c.content_hash for c in chunks],
                [c.metadata_hash for c in chunks],
                [c.text for c in chunks],
                [json.dumps(c.metadata, default=str) for c in chunks],
                [c.tokens for c in chunks],
            ),
        )

    def update_metadata(self, namespace: str, chunks: Sequence[Chunk]) -> None:
        """Record new metadata (after the store applied it)."""
        if not chunks:
            return
        statement = sql.SQL(
            "update {} set metadata = %s::jsonb, metadata_hash = %s, written_at = now() "
            "where namespace = %s and chunk_id = %s"
        ).format(self._t("chunks"))
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                statement,
                [
                    (json.dumps(c.metadata, default=str), c.metadata_hash, namespace, c.id)
                    for c in chunks
                ],
            )

    def remove(self, namespace: str, chunk_ids: Sequence[str]) -> None:
        """Forget chunks (after the store deleted them)."""
        if chunk_ids:
            self.conn.execute(
                sql.SQL("delete from {} where namespace = %s and chunk_id = any(%s)").format(
                    self._t("chunks")
                ),
                (namespace, list(chunk_ids)),
            )

    def hashes_in_use(self) -> sql.Composed:
        """A subquery of the content hashes some chunk of any namespace holds (pending ones
        too): the embedding cache keeps their vectors whatever their age."""
        return sql.SQL("select content_hash from {}").format(self._t("chunks"))

    def counts(self, namespace: str) -> dict[str, int]:
        """Rows per state in a physical namespace."""
        rows = self.conn.execute(
            sql.SQL("select state, count(*) from {} where namespace = %s group by state").format(
                self._t("chunks")
            ),
            (namespace,),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # --- documents ---

    def unchanged_documents(
        self, namespace: str, fingerprint: str, hashes: Mapping[str, str]
    ) -> dict[str, int]:
        """Those documents of ``hashes`` (``{document id: doc hash}``) whose recorded hash is the
        same and whose chunks are all still ``written`` with ``fingerprint``, with their chunk
        counts: what a run may skip without chunking.

        The chunk count is checked against the ``chunks`` rows, so ledger rows deleted by hand
        (the documented way to force a rebuild) re-plan their documents.
        """
        if not hashes:
            return {}
        rows = self.conn.execute(
            sql.SQL(
                """
                select d.document_id, d.chunks
                from {documents} d
                join unnest(%s::text[], %s::text[]) as h(document_id, doc_hash)
                  on h.document_id = d.document_id and h.doc_hash = d.doc_hash
                where d.namespace = %s
                  and d.chunks = (
                      select count(*) from {chunks} c
                      where c.namespace = d.namespace and c.document_id = d.document_id
                        and c.state = 'written' and c.fingerprint = %s)
                """
            ).format(documents=self._t("documents"), chunks=self._t("chunks")),
            (list(hashes), list(hashes.values()), namespace, fingerprint),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def forget_documents(self, namespace: str, document_ids: Sequence[str]) -> None:
        """Drop the recorded hashes of documents (before any of their chunks is written), so
        a run killed meanwhile re-plans them."""
        if document_ids:
            self.conn.execute(
                sql.SQL("delete from {} where namespace = %s and document_id = any(%s)").format(
                    self._t("documents")
                ),
                (namespace, list(document_ids)),
            )

    def record_documents(self, namespace: str, documents: Mapping[str, tuple[str, int]]) -> None:
        """Record ``{document id: (doc hash, chunks)}`` once every chunk of each is written."""
        if not documents:
            return
        self.conn.execute(
            sql.SQL(
                """
                insert into {} (namespace, document_id, doc_hash, chunks)
                select %s, * from unnest(%s::text[], %s::text[], %s::int[])
                on conflict (namespace, document_id) do update set
                    doc_hash = excluded.doc_hash, chunks = excluded.chunks
                """
            ).format(self._t("documents")),
            (
                namespace,
                list(documents),
                [h for h, _ in documents.values()],
                [n for _, n in documents.values()],
            ),
        )

    def forget_absent_documents(
        self, namespace: str, relation: sql.Composable, id_column: str
    ) -> None:
        """Drop the recorded hashes of documents no longer in ``relation``."""
        self.conn.execute(
            sql.SQL(
                "delete from {documents} r where r.namespace = %s and not exists "
                "(select 1 from {relation} d where d.{id}::text = r.document_id)"
            ).format(
                documents=self._t("documents"), relation=relation, id=sql.Identifier(id_column)
            ),
            (namespace,),
        )

    # --- namespaces ---

    def namespaces(self, logical: str) -> list[NamespaceEntry]:
        """Every physical namespace registered for ``logical``."""
        rows = self.conn.execute(
            sql.SQL(
                "select physical, logical, fingerprint, state from {} where logical = %s "
                "order by created_at"
            ).format(self._t("namespaces")),
            (logical,),
        ).fetchall()
        return [NamespaceEntry(*r) for r in rows]

    def logical_namespaces(self) -> list[str]:
        """Every logical namespace a physical one serves, by name."""
        rows = self.conn.execute(
            sql.SQL("select distinct logical from {} where state = 'serving' order by 1").format(
                self._t("namespaces")
            )
        ).fetchall()
        return [str(r[0]) for r in rows]

    def registered_at(self, physical: str) -> datetime | None:
        """When physical namespace ``physical`` was registered (made again after a drop: the
        latest time), ``None``: not registered."""
        row = self.conn.execute(
            sql.SQL("select created_at from {} where physical = %s").format(self._t("namespaces")),
            (physical,),
        ).fetchone()
        return None if row is None else row[0]

    def serving(self, logical: str) -> str | None:
        """The physical namespace that answers queries for ``logical`` (None before the first
        switch-over)."""
        row = self.conn.execute(
            sql.SQL("select physical from {} where logical = %s and state = 'serving'").format(
                self._t("namespaces")
            ),
            (logical,),
        ).fetchone()
        return str(row[0]) if row else None

    def register(self, logical: str, physical: str, fingerprint: str) -> None:
        """Register a physical namespace being built (no-op if it is known)."""
        self.conn.execute(
            sql.SQL(
                "insert into {} (physical, logical, fingerprint, state) "
                "values (%s, %s, %s, 'building') on conflict (physical) do nothing"
            ).format(self._t("namespaces")),
            (physical, logical, fingerprint),
        )

    def switch(self, logical: str, physical: str) -> None:
        """Make ``physical`` serve ``logical`` in one transaction; the previous one is retired."""
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL(
                    "update {} set state = 'retired' where logical = %s and state = 'serving' "
                    "and physical <> %s"
                ).format(self._t("namespaces")),
                (logical, physical),
            )
            self.conn.execute(
                sql.SQL(
                    "update {} set state = 'serving', switched_at = now() where physical = %s"
                ).format(self._t("namespaces")),
                (physical,),
            )

    def forget_namespace(self, physical: str) -> None:
        """Drop a physical namespace's ledger rows and registry entry (after the store drop)."""
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("delete from {} where namespace = %s").format(self._t("chunks")),
                (physical,),
            )
            self.conn.execute(
                sql.SQL("delete from {} where physical = %s").format(self._t("namespaces")),
                (physical,),
            )
            self.conn.execute(
                sql.SQL("delete from {} where namespace = %s").format(self._t("dead_letters")),
                (physical,),
            )
            self.conn.execute(
                sql.SQL("delete from {} where namespace = %s").format(self._t("documents")),
                (physical,),
            )

    # --- runs ---

    def start_run(
        self,
        logical: str,
        namespace: str,
        provider: str,
        model: str,
        fingerprint: str,
        dry_run: bool,
        versions: Mapping[str, str | None] | None = None,
        index_config: Mapping[str, Any] | None = None,
    ) -> int:
        """Open a run row with the versions that made it (:data:`VERSION_COLUMNS`, others in
        ``versions`` ignored) and its index configuration; returns its id. The run records its
        document changes (:meth:`record_changes`, :meth:`record_absent_documents`)."""
        found = versions or {}
        row = self.conn.execute(
            sql.SQL(
                "insert into {} (logical_namespace, namespace, provider, model, fingerprint, "
                "dry_run, status, {}, index_config, document_changes) "
                "values (%s, %s, %s, %s, %s, %s, 'running', {}, %s::jsonb, true) "
                "returning run_id"
            ).format(
                self._t("runs"),
                sql.SQL(", ").join(map(sql.Identifier, VERSION_COLUMNS)),
                sql.SQL(", ").join([sql.Placeholder()] * len(VERSION_COLUMNS)),
            ),
            (
                logical,
                namespace,
                provider,
                model,
                fingerprint,
                dry_run,
                *[found.get(c) for c in VERSION_COLUMNS],
                None if index_config is None else json.dumps(index_config, default=str),
            ),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, status: str, values: dict[str, Any]) -> None:
        """Close a run row with its counts, usage and cost (or its error)."""
        allowed = {
            "chunks",
            "embedded",
            "cache_hits",
            "metadata_updated",
            "deleted",
            "requests",
            "input_tokens",
            "estimated_cost_usd",
            "switched",
            "error",
            "dead_letters",
        }
        values = {k: v for k, v in values.items() if k in allowed}
        sets: list[sql.Composable] = [sql.SQL("status = %s"), sql.SQL("finished_at = now()")]
        sets += [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values]
        # Documents in the namespace now: the previous run's count plus this run's changes (its
        # run_documents rows), so a run's bookkeeping follows what it changed. Counted in the
        # ledger instead when there is no previous count (the first run after an upgrade, a run
        # after a killed one, the first run of a namespace dropped and made again: previous
        # runs must have ended after it was registered) and for a failed run (a page it left
        # half-written recorded no changes): one pass over the namespace's chunks.
        count = sql.SQL(
            """(select p.document_count from {runs} p
                where p.namespace = {r}.namespace and p.run_id < {r}.run_id
                  and p.finished_at >= (select n.created_at from {namespaces} n
                                        where n.physical = {r}.namespace)
                order by p.run_id desc limit 1)
               + (select count(*) filter (where change = 'added')
                         - count(*) filter (where change = 'deleted')
                  from {changes} x where x.run_id = {r}.run_id)"""
        ).format(
            runs=self._t("runs"),
            r=sql.Identifier("runs"),
            changes=self._t("run_documents"),
            namespaces=self._t("namespaces"),
        )
        exact = sql.SQL(
            "(select count(distinct document_id) from {chunks} c "
            "where c.namespace = {r}.namespace and c.state = 'written')"
        ).format(chunks=self._t("chunks"), r=sql.Identifier("runs"))
        sets.append(
            sql.SQL("document_count = {}").format(
                exact if status != "completed" else sql.SQL("coalesce({}, {})").format(count, exact)
            )
        )
        self.conn.execute(
            sql.SQL("update {} set {} where run_id = %s").format(
                self._t("runs"), sql.SQL(", ").join(sets)
            ),
            (status, *values.values(), run_id),
        )

    def run(self, run_id: int) -> RunRecord | None:
        """The ``runs`` row of ``run_id`` (``None``: no such run)."""
        row = self.conn.execute(
            sql.SQL(
                "select run_id, logical_namespace, namespace, provider, model, fingerprint, "
                "status, started_at, finished_at, chunks, embedded, deleted, input_tokens, "
                "estimated_cost_usd, {}, index_config, documents, "
                "coalesce(document_changes, false), document_count from {} where run_id = %s"
            ).format(sql.SQL(", ").join(map(sql.Identifier, VERSION_COLUMNS)), self._t("runs")),
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        n = len(VERSION_COLUMNS)
        config, documents, changes, count = row[14 + n :]
        return RunRecord(
            run_id=row[0],
            logical_namespace=row[1],
            namespace=row[2],
            provider=row[3],
            model=row[4],
            fingerprint=row[5],
            status=row[6],
            started_at=row[7],
            finished_at=row[8],
            chunks=row[9],
            embedded=row[10],
            deleted=row[11],
            input_tokens=row[12],
            estimated_cost_usd=None if row[13] is None else float(row[13]),
            versions=dict(zip(VERSION_COLUMNS, row[14 : 14 + n], strict=True)),
            index_config=config,
            documents=documents,
            document_changes=bool(changes),
            document_count=count,
        )

    def usage_between(self, logical: str, after: int, upto: int) -> tuple[int, int, float]:
        """``(runs, input tokens, estimated cost in USD)`` of the runs of ``logical`` with
        ``after < run_id <= upto``: what getting from one run to the other cost."""
        row = self.conn.execute(
            sql.SQL(
                "select count(*), coalesce(sum(input_tokens), 0), "
                "coalesce(sum(estimated_cost_usd), 0) from {} "
                "where logical_namespace = %s and run_id > %s and run_id <= %s and not dry_run"
            ).format(self._t("runs")),
            (logical, after, upto),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2])

    def last_run(self, namespace: str) -> int | None:
        """The newest completed run that wrote physical ``namespace`` (``None``: none)."""
        row = self.conn.execute(
            sql.SQL(
                "select max(run_id) from {} where namespace = %s and status = 'completed'"
            ).format(self._t("runs")),
            (namespace,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- run changes ---

    def record_changes(self, run_id: int, changes: Mapping[str, str]) -> None:
        """Record ``{document id: 'added' | 'changed' | 'deleted'}`` as run ``run_id``'s changes
        (:meth:`record_documents` and this go in one transaction when a page is written)."""
        if not changes:
            return
        self.conn.execute(
            sql.SQL(
                """
                insert into {} (run_id, document_id, change)
                select %s, * from unnest(%s::text[], %s::text[])
                on conflict (run_id, document_id) do update set change = excluded.change
                """
            ).format(self._t("run_documents")),
            (run_id, list(changes), list(changes.values())),
        )

    def record_absent_documents(
        self, run_id: int, namespace: str, relation: sql.Composable, id_column: str
    ) -> int:
        """Record as run ``run_id``'s ``deleted`` documents those with chunks in ``namespace``
        that are no longer in ``relation`` (the documents model): one ``insert ... select``,
        the ids never leave the database. Call it before their chunks are deleted (a run killed
        meanwhile records them, the next one again); returns how many."""
        cur = self.conn.execute(
            sql.SQL(
                "insert into {} (run_id, document_id, change) select %s, o.document_id, "
                "'deleted' from ({}) o "
                "on conflict (run_id, document_id) do update set change = excluded.change"
            ).format(
                self._t("run_documents"),
                self._orphans("distinct c.document_id", relation, id_column),
            ),
            (run_id, namespace),
        )
        return cur.rowcount

    def runs_without_changes(self, namespace: str, after: int, upto: int) -> int:
        """How many runs that wrote physical ``namespace`` with ``after < run_id <= upto``
        recorded no document changes (rows from before ``run_documents``)."""
        row = self.conn.execute(
            sql.SQL(
                "select count(*) from {} where namespace = %s and run_id > %s and run_id <= %s "
                "and not coalesce(document_changes, false)"
            ).format(self._t("runs")),
            (namespace, after, upto),
        ).fetchone()
        return int(row[0]) if row else 0

    def net_changes(self, namespace: str, after: int, upto: int) -> dict[str, list[str]]:
        """The net effect on physical ``namespace`` of the runs with ``after < run_id <= upto``:
        ``{'added': [...], 'changed': [...], 'deleted': [...]}`` (ids sorted), composed in SQL.

        Per document, its first change says whether it was in the namespace before (not if
        ``added``) and its last whether it is after (not if ``deleted``): added then deleted is
        nothing, added then changed is added, changed then deleted is deleted, deleted then
        added is changed.
        """
        rows = self.conn.execute(
            sql.SQL(
                """
                select net, document_id from (
                    select document_id,
                        case when first_change = 'added' and last_change = 'deleted' then null
                             when first_change = 'added' then 'added'
                             when last_change = 'deleted' then 'deleted'
                             else 'changed' end as net
                    from (
                        select x.document_id,
                            (array_agg(x.change order by x.run_id))[1] as first_change,
                            (array_agg(x.change order by x.run_id desc))[1] as last_change
                        from {changes} x join {runs} r on r.run_id = x.run_id
                        where r.namespace = %s and x.run_id > %s and x.run_id <= %s
                        group by x.document_id
                    ) d
                ) n
                where net is not null
                order by document_id
                """
            ).format(changes=self._t("run_documents"), runs=self._t("runs")),
            (namespace, after, upto),
        ).fetchall()
        out: dict[str, list[str]] = {"added": [], "changed": [], "deleted": []}
        for net, document_id in rows:
            out[net].append(document_id)
        return out

    # --- dead letters ---

    def record_dead_letters(
        self,
        namespace: str,
        logical: str,
        run_id: int | None,
        rejected: Sequence[tuple[Chunk, str, str]],
    ) -> None:
        """Record chunks the provider rejected, as ``(chunk, error class, message)``.

        ``first_seen`` is kept while the chunk's text stays the same; a new text starts over.
        """
        if not rejected:
            return
        statement = sql.SQL(
            """
            insert into {} (namespace, chunk_id, logical_namespace, document_id, content_hash,
                            error_class, message, run_id)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (namespace, chunk_id) do update set
                logical_namespace = excluded.logical_namespace,
                document_id = excluded.document_id,
                first_seen = case when {}.content_hash = excluded.content_hash
                                  then {}.first_seen else now() end,
                content_hash = excluded.content_hash,
                error_class = excluded.error_class,
                message = excluded.message,
                run_id = excluded.run_id,
                last_seen = now()
            """
        ).format(self._t("dead_letters"), *[sql.Identifier("dead_letters")] * 2)
        rows = [
            (namespace, c.id, logical, c.document_id, c.content_hash, kind, message[:2000], run_id)
            for c, kind, message in rejected
        ]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(statement, rows)

    def clear_dead_letters(self, namespace: str, keep: Sequence[str] = ()) -> int:
        """Forget the dead letters of a physical namespace except the chunk ids in ``keep``
        (what the run that just ended still saw rejected); returns how many were forgotten."""
        cur = self.conn.execute(
            sql.SQL("delete from {} where namespace = %s and not (chunk_id = any(%s))").format(
                self._t("dead_letters")
            ),
            (namespace, list(keep)),
        )
        return cur.rowcount

    def dead_letters(self, namespace: str) -> list[DeadLetter]:
        """The dead letters of a physical namespace, by chunk id."""
        rows = self.conn.execute(
            sql.SQL(
                "select namespace, chunk_id, logical_namespace, document_id, content_hash, "
                "error_class, message, run_id, first_seen, last_seen from {} "
                "where namespace = %s order by chunk_id"
            ).format(self._t("dead_letters")),
            (namespace,),
        ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters per logical namespace (only namespaces that have some)."""
        rows = self.conn.execute(
            sql.SQL(
                "select logical_namespace, count(*) from {} group by logical_namespace "
                "order by logical_namespace"
            ).format(self._t("dead_letters"))
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}


def serving_physical(warehouse: Warehouse, logical: str, schema: str = "index_state") -> str | None:
    """:meth:`Ledger.serving` on a connection of its own, for readers (the search side).

    ``None`` before the first switch-over, and when no indexing run created the ledger yet.
    """
    ledger = Ledger(warehouse, schema)
    try:
        return ledger.serving(logical)
    except psycopg.errors.UndefinedTable:
        return None
    finally:
        ledger.close()


@dataclass(frozen=True)
class TextRows:
    """Where the ledger keeps the texts of the chunks the store acknowledged, for readers that
    query them in SQL (full-text search with Pinecone, whose vectors live outside Postgres)."""

    schema: str
    table: str
    id_column: str
    document_id_column: str
    text_column: str
    metadata_column: str
    #: ``(column, value)`` equalities selecting the namespace's written rows.
    scope: tuple[tuple[str, str], ...]


def written_text_rows(schema: str, namespace: str) -> TextRows:
    """The ledger rows holding the text of physical ``namespace``'s written chunks."""
    return TextRows(
        schema=check_identifier(schema, "schema name"),
        table="chunks",
        id_column="chunk_id",
        document_id_column="document_id",
        text_column="text",
        metadata_column="metadata",
        scope=(("namespace", namespace), ("state", WRITTEN)),
    )


def chunk_texts(
    warehouse: Warehouse,
    namespace: str,
    ids: Sequence[str],
    schema: str = "index_state",
) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{chunk id: (text, metadata)}`` of chunks of a physical namespace (missing ids left out).

    ``namespace`` is the physical one, i.e. what :func:`serving_physical` returns.
    """
    if not ids:
        return {}
    table = sql.SQL("{}.chunks").format(sql.Identifier(check_identifier(schema, "schema name")))
    with warehouse.connect() as conn:
        try:
            rows = conn.execute(
                sql.SQL(
                    "select chunk_id, text, metadata from {} "
                    "where namespace = %s and chunk_id = any(%s)"
                ).format(table),
                (namespace, list(ids)),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    return {r[0]: (r[1], r[2]) for r in rows}


@dataclass(frozen=True)
class Freshness:
    """How far a logical namespace's index lags, as the ledger knows it (for monitoring).

    ``oldest_pending_updated_at`` and ``newest_written_updated_at`` are the source rows'
    ``updated_at`` (epoch seconds) carried in chunk metadata; ``None`` when the model declares
    no ``updated_at_column`` or no chunk is in that state.
    """

    logical: str
    physical: str
    pending_chunks: int
    written_chunks: int
    oldest_pending_updated_at: float | None
    newest_written_updated_at: float | None
    last_success_at: float | None
    last_run_at: float | None
    last_run_failed: bool


def freshness(conn: psycopg.Connection, schema: str = "index_state") -> list[Freshness]:
    """One :class:`Freshness` per logical namespace (its serving physical namespace, else the
    newest one being built), in two aggregate queries; ``[]`` before any indexing run."""
    s = sql.Identifier(check_identifier(schema, "schema name"))
    try:
        with conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    """
                    with current as (
                        select distinct on (logical) logical, physical from {s}.namespaces
                        where state <> 'retired'
                        order by logical, state = 'serving' desc, created_at desc
                    )
                    select c.logical, c.physical,
                        count(*) filter (where k.state = 'pending'),
                        count(*) filter (where k.state = 'written'),
                        extract(epoch from min((k.metadata->>'updated_at')::timestamptz)
                            filter (where k.state = 'pending')),
                        extract(epoch from max((k.metadata->>'updated_at')::timestamptz)
                            filter (where k.state = 'written'))
                    from current c left join {s}.chunks k on k.namespace = c.physical
                    group by c.logical, c.physical
                    """
                ).format(s=s)
            ).fetchall()
            runs = conn.execute(
                sql.SQL(
                    """
                    select logical_namespace,
                        extract(epoch from max(finished_at) filter (where status = 'completed')),
                        extract(epoch from max(started_at)),
                        (array_agg(status order by started_at desc))[1] = 'failed'
                    from {s}.runs where not dry_run group by logical_namespace
                    """
                ).format(s=s)
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    by_run = {r[0]: r[1:] for r in runs}
    out = []
    for logical, physical, pending, written, oldest, newest in rows:
        success, last, failed = by_run.get(logical, (None, None, False))
        out.append(
            Freshness(
                logical=logical,
                physical=physical,
                pending_chunks=int(pending),
                written_chunks=int(written),
                oldest_pending_updated_at=_seconds(oldest),
                newest_written_updated_at=_seconds(newest),
                last_success_at=_seconds(success),
                last_run_at=_seconds(last),
                last_run_failed=bool(failed),
            )
        )
    return out


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
