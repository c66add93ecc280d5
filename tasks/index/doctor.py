"""The index doctor: compare, per namespace, what the ledger says the store holds with what the
store really holds, and optionally repair the difference.

Kinds of drift, per record id (each id counted under one kind, in this order):

- ``missing``: in the ledger, not in the store (a vector deleted behind the indexer's back);
- ``orphan``: in the store, unknown to the ledger (written by someone else, or a lost delete);
- ``dimension``: the stored vector has another length than the embedder produces;
- ``content_hash``: the stored content hash differs from the ledger's (the vector may be of
  another text);
- ``metadata``: the stored metadata differs from the ledger's (filters would see stale values).

The doctor reads the physical namespace that serves each logical one. The ledger
(:mod:`tasks.index.ledger`) is the reference: it is what the last acknowledged index run wrote.
:func:`repair` holds the ledger's namespace lock (no index run writes meanwhile), re-upserts
missing and stale records from the ledger's text and metadata with vectors from the embedding
cache (only texts the cache lacks are embedded), deletes orphans, and reports what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.embedders.base import Embedder
from tasks.errors import ConfigError, PipelineError
from tasks.index.chunking import Chunk
from tasks.index.documents import load_specs
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import Ledger
from tasks.index.run import (
    STAMP_KEYS,
    Stamp,
    chunk_record,
    chunker_config,
    index_fingerprint,
    slices,
)
from tasks.settings import Settings
from tasks.stores.base import VectorStore

logger = logging.getLogger(__name__)

MISSING = "missing"
ORPHAN = "orphan"
DIMENSION = "dimension"
CONTENT_HASH = "content_hash"
METADATA = "metadata"
KINDS = (MISSING, ORPHAN, DIMENSION, CONTENT_HASH, METADATA)

#: How many example ids a report keeps per kind.
EXAMPLES = 5


class DoctorError(PipelineError):
    """The doctor cannot check or repair a namespace as asked."""


@dataclass
class DoctorReport:
    """What the doctor found in one logical namespace (and, after a repair, what it did)."""

    namespace: str
    #: The physical namespace checked (``None``: nothing serves the logical one yet).
    physical: str | None
    ledger_records: int = 0
    store_records: int = 0
    #: Every drifting id per kind (the counts and examples are derived from it).
    ids: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    #: After :func:`repair`: ``upserted``, ``deleted``, ``embedded`` (texts not in the cache).
    repaired: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Drifting ids per kind."""
        return {k: len(v) for k, v in self.ids.items()}

    @property
    def examples(self) -> dict[str, list[str]]:
        """Up to :data:`EXAMPLES` ids per kind that drifts."""
        return {k: sorted(v)[:EXAMPLES] for k, v in self.ids.items() if v}

    @property
    def drift(self) -> int:
        """Drifting ids in all."""
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        """Store and ledger agree."""
        return self.drift == 0

    def payload(self) -> dict[str, Any]:
        """Counts and examples (no full id lists), for events and artifacts."""
        return {
            "namespace": self.namespace,
            "physical_namespace": self.physical,
            "ledger_records": self.ledger_records,
            "store_records": self.store_records,
            "counts": self.counts,
            "examples": self.examples,
            "repaired": self.repaired,
        }

    def to_text(self) -> str:
        """One line for logs and the command line, plus one per drifting kind."""
        if self.physical is None:
            return f"{self.namespace}: not indexed yet (nothing to check)"
        head = (
            f"{self.namespace} ({self.physical}): {self.ledger_records} in the ledger, "
            f"{self.store_records} in the store, "
            + ("no drift" if self.clean else f"{self.drift} drifting")
        )
        lines = [head]
        for kind, examples in self.examples.items():
            more = "" if self.counts[kind] <= len(examples) else ", ..."
            lines.append(f"  {kind}: {self.counts[kind]} (e.g. {', '.join(examples)}{more})")
        if self.repaired:
            done = ", ".join(f"{v} {k}" for k, v in self.repaired.items())
            lines.append(f"  repaired: {done}")
        return "\n".join(lines)


def comparable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as both sides can store it: nulls left out (Pinecone drops them), whole floats
    as ints (Pinecone returns every number as a float), and without the keys only the store
    carries (:data:`tasks.index.run.STAMP_KEYS`: which run wrote the vector is not drift)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None or key in STAMP_KEYS:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def diagnose(
    ledger: Ledger, store: VectorStore, logical: str, dimension: int, page_size: int = 500
) -> DoctorReport:
    """Compare the ledger with the store for the physical namespace serving ``logical``.

    Reads only. ``dimension`` is what the embedder produces. Hold ``ledger.lock(logical)``
    meanwhile (:func:`check_namespaces` does), or an index run's writes show as drift.
    """
    physical = ledger.serving(logical)
    report = DoctorReport(logical, physical)
    if physical is None:
        return report
    expected = ledger.chunks(physical)
    report.ledger_records = len(expected)
    seen: set[str] = set()
    for page in store.scan(physical, page_size):
        for record in page:
            report.store_records += 1
            chunk = expected.get(record.id)
            if chunk is None:
                report.ids[ORPHAN].append(record.id)
                continue
            seen.add(record.id)
            if record.dimension != dimension:
                report.ids[DIMENSION].append(record.id)
            elif record.content_hash != chunk.content_hash:
                report.ids[CONTENT_HASH].append(record.id)
            elif comparable(record.metadata) != comparable(chunk.metadata):
                report.ids[METADATA].append(record.id)
    report.ids[MISSING] = [i for i in expected if i not in seen]
    return report


def repair(
    ledger: Ledger,
    store: VectorStore,
    cache: EmbeddingCache,
    embedder: Embedder,
    settings: Settings,
    logical: str,
) -> DoctorReport:
    """Diagnose ``logical`` under the ledger's namespace lock and fix what drifts: re-upsert
    missing and stale records (vectors from the embedding cache; only cache misses are
    embedded, and cached), delete orphans. Returns the report of what was found, with
    :attr:`DoctorReport.repaired` filled in; diagnose again to confirm.

    Raises:
        IndexBusy: an index run kept the namespace for all of ``INDEX_LOCK_WAIT_S``.
        DoctorError: the namespace was built with another embedder or chunker configuration
            (the cache has no vectors for it: run ``semantic-index index``, which rebuilds).
    """
    with ledger.lock(logical, settings.index_lock_wait_s):
        report = diagnose(ledger, store, logical, embedder.dimension)
        if report.physical is None or report.clean:
            return report
        physical = report.physical
        fingerprint = _checked_fingerprint(ledger, embedder, settings, logical, physical)
        stale = [i for k in (MISSING, DIMENSION, CONTENT_HASH, METADATA) for i in report.ids[k]]
        chunks = list(ledger.chunks(physical, stale).values())
        vectors, embedded = _vectors(ledger, cache, embedder, chunks)
        if chunks:
            store.ensure_namespace(physical, embedder.dimension)
        size = settings.index_batch_size
        # The doctor restores what the last completed run wrote: its records carry that run.
        stamp = Stamp(fingerprint, ledger.last_run(physical))
        for batch in slices(chunks, size):
            records = [chunk_record(c, vectors[c.content_hash], stamp) for c in batch]
            store.upsert(physical, records)
            ledger.mark_written(physical, logical, fingerprint, batch)
        orphans = report.ids[ORPHAN]
        for batch in slices(orphans, size):
            store.delete(physical, batch)
        report.repaired = {"upserted": len(chunks), "deleted": len(orphans), "embedded": embedded}
    logger.info("Repaired %s", report.to_text())
    return report


def check_namespaces(
    ledger: Ledger,
    store: VectorStore,
    cache: EmbeddingCache,
    embedder: Embedder,
    settings: Settings,
    namespaces: Iterable[str] | None = None,
    fix: bool = False,
) -> list[DoctorReport]:
    """:func:`diagnose` (or, with ``fix``, :func:`repair`) each logical namespace (default:
    every one the ledger has serving), each under its namespace lock: a run writing meanwhile
    would show as drift that is not there.

    Raises:
        IndexBusy: an index run kept a namespace for all of ``INDEX_LOCK_WAIT_S``.
    """
    ledger.setup()
    cache.setup(ledger.conn)
    namespaces = ledger.logical_namespaces() if namespaces is None else list(namespaces)
    reports = []
    for logical in namespaces:
        if fix:
            reports.append(repair(ledger, store, cache, embedder, settings, logical))
        else:
            with ledger.lock(logical, settings.index_lock_wait_s):
                reports.append(diagnose(ledger, store, logical, embedder.dimension))
    return reports


def run_doctor(
    settings: Settings, namespaces: Iterable[str] | None = None, fix: bool = False
) -> list[DoctorReport]:
    """:func:`check_namespaces` with the configured ledger, store, cache and embedder, closed
    afterwards: what the ``index-doctor`` task and ``semantic-index doctor`` run."""
    from tasks.embedders import get_embedder
    from tasks.stores import get_store
    from tasks.warehouse import get_warehouse

    ledger = Ledger(get_warehouse(settings), settings.index_state_schema)
    store = get_store(settings)
    cache = EmbeddingCache(settings.index_state_schema)
    try:
        return check_namespaces(
            ledger, store, cache, get_embedder(settings), settings, namespaces, fix=fix
        )
    finally:
        ledger.close()
        store.close()


def _checked_fingerprint(
    ledger: Ledger, embedder: Embedder, settings: Settings, logical: str, physical: str
) -> str:
    """The namespace's configuration fingerprint, if it is the current one."""
    try:
        spec = next((s for s in load_specs(settings) if s.namespace == logical), None)
    except ConfigError:  # no manifest here: the fingerprint of a model without sections
        spec = None
    current = index_fingerprint(embedder, chunker_config(settings, embedder, spec))
    entry = next((e for e in ledger.namespaces(logical) if e.physical == physical), None)
    if entry is None or entry.fingerprint != current:
        raise DoctorError(
            f"Namespace {physical} (serving {logical}) was built with another embedder or "
            "chunker configuration than the current settings, so the doctor cannot re-create "
            "its vectors. Run `semantic-index index`: it builds the new configuration and "
            "switches over."
        )
    return current


def _vectors(
    ledger: Ledger, cache: EmbeddingCache, embedder: Embedder, chunks: Sequence[Chunk]
) -> tuple[dict[str, list[float]], int]:
    """Vectors of ``chunks`` by content hash, and how many texts had to be embedded."""
    hashes = [c.content_hash for c in chunks]
    vectors = cache.get(ledger.conn, embedder.fingerprint, hashes)
    texts = {c.content_hash: c.text for c in chunks if c.content_hash not in vectors}
    if texts:
        logger.warning("%d texts are not in the embedding cache; embedding them", len(texts))
        fresh = dict(zip(texts, embedder.embed(list(texts.values())), strict=True))
        with ledger.conn.transaction():
            cache.put(ledger.conn, embedder.fingerprint, fresh)
        vectors.update(fresh)
    return vectors, len(texts)
