"""The journal of OpenAI batches submitted for backfills, in Postgres beside the ledger.

A batch costs money the moment it is created, and finishes hours later: a run killed meanwhile
must resume polling the *same* batches, not submit (and pay for) them again. The journal keeps,
per embedder fingerprint and content hash, the batch and the request line (``custom_id`` and
position in its ``input``) carrying that text, from the moment the batch is created until the
text's vector is in the embedding cache (or its failure was handled). So:

- a hash in the journal is *in flight*: the next run polls its batch;
- a hash not in the journal and not in the cache was never submitted (or was handled): it is
  submitted anew;
- a vector is put into the cache and its journal row deleted in one transaction, so no crash
  loses a paid-for vector or keeps a hash in flight that is already done.

Tables in ``<INDEX_STATE_SCHEMA>`` (created idempotently, like the ledger's):
``batch_jobs (batch_id, fingerprint, namespace, input_file_id, requests, inputs, status,
submitted_at, finished_at)``, one row per batch (kept as history; ``namespace`` is the logical
namespace whose run submitted it), and ``batch_inputs (fingerprint,
content_hash, batch_id, custom_id, position)``, one row per text in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tasks.index.ledger import setup_schema
from tasks.settings import check_identifier


@dataclass(frozen=True)
class InFlight:
    """Where one text waits: its batch, request line and position in that line's ``input``."""

    content_hash: str
    batch_id: str
    custom_id: str
    position: int


class BatchJournal:
    """Reads and writes the journal tables on a caller-supplied (autocommit) connection."""

    def __init__(self, schema: str = "index_state") -> None:
        self.schema = check_identifier(schema, "schema name")
        self._jobs = sql.SQL("{}.batch_jobs").format(sql.Identifier(self.schema))
        self._inputs = sql.SQL("{}.batch_inputs").format(sql.Identifier(self.schema))

    def setup(self, conn: psycopg.Connection) -> None:
        """Create the schema and the journal's tables if missing (serialised across processes)."""
        setup_schema(
            conn,
            [
                sql.SQL("create schema if not exists {}").format(sql.Identifier(self.schema)),
                sql.SQL(
                    """
                    create table if not exists {} (
                        batch_id text primary key,
                        fingerprint text not null,
                        namespace text not null,
                        input_file_id text not null,
                        requests int not null,
                        inputs int not null,
                        status text not null,
                        submitted_at timestamptz not null default now(),
                        finished_at timestamptz
                    )
                    """
                ).format(self._jobs),
                sql.SQL(
                    """
                    create table if not exists {} (
                        fingerprint text not null,
                        content_hash text not null,
                        batch_id text not null,
                        custom_id text not null,
                        position int not null,
                        primary key (fingerprint, content_hash)
                    )
                    """
                ).format(self._inputs),
                sql.SQL(
                    "create index if not exists batch_inputs_batch on {} (batch_id, custom_id)"
                ).format(self._inputs),
            ],
        )

    def record(
        self,
        conn: psycopg.Connection,
        fingerprint: str,
        namespace: str,
        batch_id: str,
        input_file_id: str,
        status: str,
        lines: Sequence[tuple[str, Sequence[str]]],
    ) -> None:
        """Journal a created batch: ``lines`` are its ``(custom_id, content hashes in input
        order)``. One transaction: the batch and all its texts, or nothing."""
        rows = [
            (fingerprint, h, batch_id, custom_id, position)
            for custom_id, hashes in lines
            for position, h in enumerate(hashes)
        ]
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "insert into {} (batch_id, fingerprint, namespace, input_file_id, requests, "
                    "inputs, status) values (%s, %s, %s, %s, %s, %s, %s)"
                ).format(self._jobs),
                (batch_id, fingerprint, namespace, input_file_id, len(lines), len(rows), status),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "insert into {} (fingerprint, content_hash, batch_id, custom_id, position) "
                        "values (%s, %s, %s, %s, %s) on conflict (fingerprint, content_hash) "
                        "do update set batch_id = excluded.batch_id, custom_id = "
                        "excluded.custom_id, position = excluded.position"
                    ).format(self._inputs),
                    rows,
                )

    def in_flight(
        self, conn: psycopg.Connection, fingerprint: str, hashes: Sequence[str]
    ) -> dict[str, InFlight]:
        """Which of ``hashes`` wait in a submitted batch, by hash."""
        out: dict[str, InFlight] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 5000):
            rows = conn.execute(
                sql.SQL(
                    "select content_hash, batch_id, custom_id, position from {} "
                    "where fingerprint = %s and content_hash = any(%s)"
                ).format(self._inputs),
                (fingerprint, unique[start : start + 5000]),
            ).fetchall()
            out.update({r[0]: InFlight(r[0], r[1], r[2], r[3]) for r in rows})
        return out

    def unfinished(self, conn: psycopg.Connection, fingerprint: str, namespace: str) -> list[str]:
        """Batches that ``namespace``'s runs submitted and that still have texts in flight,
        oldest first (a resumed run takes them all over, even those whose texts it no longer
        wants: they are paid for, and their vectors go to the cache)."""
        rows = conn.execute(
            sql.SQL(
                "select j.batch_id from {} j where j.fingerprint = %s and j.namespace = %s "
                "and exists (select 1 from {} i where i.batch_id = j.batch_id) "
                "order by j.submitted_at, j.batch_id"
            ).format(self._jobs, self._inputs),
            (fingerprint, namespace),
        ).fetchall()
        return [r[0] for r in rows]

    def positions(self, conn: psycopg.Connection, batch_id: str) -> dict[str, dict[int, str]]:
        """``{custom_id: {position: hash}}`` of the texts still in flight in ``batch_id``."""
        rows = conn.execute(
            sql.SQL("select custom_id, position, content_hash from {} where batch_id = %s").format(
                self._inputs
            ),
            (batch_id,),
        ).fetchall()
        out: dict[str, dict[int, str]] = {}
        for custom_id, position, content_hash in rows:
            out.setdefault(custom_id, {})[position] = content_hash
        return out

    def forget(self, conn: psycopg.Connection, fingerprint: str, hashes: Sequence[str]) -> None:
        """The texts are done (vector cached) or handled (dead letter, sent synchronously)."""
        if hashes:
            conn.execute(
                sql.SQL("delete from {} where fingerprint = %s and content_hash = any(%s)").format(
                    self._inputs
                ),
                (fingerprint, list(hashes)),
            )

    def finish(self, conn: psycopg.Connection, batch_id: str, status: str) -> None:
        """Record a batch's terminal status."""
        conn.execute(
            sql.SQL(
                "update {} set status = %s, finished_at = coalesce(finished_at, now()) "
                "where batch_id = %s"
            ).format(self._jobs),
            (status, batch_id),
        )

    def jobs(self, conn: psycopg.Connection) -> list[tuple[str, str, int]]:
        """``(batch_id, status, inputs)`` of every journaled batch, oldest first."""
        rows = conn.execute(
            sql.SQL(
                "select batch_id, status, inputs from {} order by submitted_at, batch_id"
            ).format(self._jobs)
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]
