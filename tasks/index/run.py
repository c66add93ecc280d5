"""Keep each logical namespace of the vector store equal to its documents model, paying only for
what changed, and safe to kill at any point.

One run for one documents model (``EmbeddingSpec``):

1. chunk every document (token-aware, :mod:`tasks.index.chunking`) into the desired chunk set;
2. diff it against the ledger of the target physical namespace (:func:`plan_changes`):
   new/changed text -> embed + upsert, metadata-only -> ``update_metadata``, gone -> delete,
   unchanged -> nothing;
3. take vectors from the embedding cache where possible, embed the rest window by window
   (each window cached as soon as it is embedded), upsert in batches: ledger rows go
   ``pending`` before a batch is sent and ``written`` only after the store acknowledged it;
4. validate (ledger == store == desired) and, for a new configuration, switch the logical
   namespace over to the freshly built physical one, then drop the old one.

The index fingerprint (embedder fingerprint + chunker settings) picks the physical namespace, so a
new model or chunk size is built next to the serving one (see :mod:`tasks.index.namespaces`).

``python -m tasks.index.run [--dry-run]`` indexes every declared model with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.embedders.base import Embedder, EmbeddingBudgetExceeded
from tasks.errors import MassDeleteRefused, ValidationFailed
from tasks.index.chunking import (
    Chunk,
    ChunkerConfig,
    chunk_document,
    chunk_id,
    metadata_hash,
    text_hash,
)
from tasks.index.documents import Document, EmbeddingSpec, count_documents, fetch_documents
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import PENDING, WRITTEN, Ledger, LedgerEntry
from tasks.index.namespaces import choose_target
from tasks.progress import Progress, ProgressCallback
from tasks.settings import Settings, get_settings
from tasks.stores.base import VectorRecord, VectorStore
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)

#: Chunk size when CHUNK_TOKENS is unset (capped at the model's input limit).
DEFAULT_CHUNK_TOKENS = 256

#: Texts token-counted per step of the planning phase (one progress update each).
COUNT_SLICE = 1024


@dataclass
class IndexResult:
    """What indexing one namespace did (or, in a dry run, would do)."""

    namespace: str
    model: str
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    vectors_in_store: int = 0
    physical_namespace: str = ""
    fingerprint: str = ""
    upserted: int = 0
    cache_hits: int = 0
    cache_pruned: int = 0
    metadata_updated: int = 0
    requests: int = 0
    input_tokens: int = 0
    estimated_cost_usd: float = 0.0
    tokens_to_embed: int = 0
    rebuilt: bool = False
    switched: bool = False
    dry_run: bool = False
    run_id: int | None = None

    def to_text(self) -> str:
        """One line for logs and the CLI."""
        verb = "would embed" if self.dry_run else "embedded"
        text = (
            f"{self.namespace} -> {self.physical_namespace}: {self.documents} documents, "
            f"{self.chunks} chunks; {verb} {self.embedded} ({self.tokens_to_embed} tokens, "
            f"~${self.estimated_cost_usd:.4f}), {self.cache_hits} from cache, "
            f"{self.metadata_updated} metadata-only, {self.deleted} deleted, "
            f"{self.unchanged} unchanged"
        )
        if not self.dry_run:
            text += f"; {self.requests} requests, {self.vectors_in_store} vectors in store"
        if self.rebuilt:
            text += "; rebuilt" + (" and switched over" if self.switched else "")
        if self.cache_pruned:
            text += f"; {self.cache_pruned} unused embedding cache entries pruned"
        return text


@dataclass
class Plan:
    """The diff between the desired chunks and the ledger of one physical namespace."""

    upsert: list[Chunk] = field(default_factory=list)
    update_metadata: list[Chunk] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    """The chunker settings for ``embedder`` (chunk size capped at its input limit)."""
    max_tokens = min(settings.chunk_tokens or DEFAULT_CHUNK_TOKENS, embedder.max_input_tokens)
    return ChunkerConfig(
        max_tokens=max_tokens,
        overlap_tokens=min(settings.chunk_overlap_tokens, max_tokens // 2),
        prepend_title=settings.chunk_prepend_title,
    )


def index_fingerprint(embedder: Embedder, config: ChunkerConfig) -> str:
    """Identity of an index build: what made the vectors and how the texts were cut."""
    payload = json.dumps(
        {"embedder": embedder.fingerprint, "chunker": config.as_dict()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def document_chunks(
    doc: Document, config: ChunkerConfig, count: Callable[[Sequence[str]], list[int]]
) -> list[Chunk]:
    """The chunks of one document, with stable ids and content/metadata hashes."""
    base: dict[str, Any] = {**doc.metadata, "document_id": doc.id}
    if doc.title:
        base["title"] = doc.title
    if doc.url:
        base["url"] = doc.url
    if doc.updated_at:
        base["updated_at"] = doc.updated_at
    chunks = []
    for position, (text, tokens) in enumerate(chunk_document(doc.text, doc.title, config, count)):
        metadata = {**base, "chunk_position": position}
        chunks.append(
            Chunk(
                id=chunk_id(doc.id, position),
                document_id=doc.id,
                position=position,
                text=text,
                metadata=metadata,
                content_hash=text_hash(text),
                metadata_hash=metadata_hash(metadata),
                tokens=tokens,
            )
        )
    return chunks


def plan_changes(
    desired: Mapping[str, Chunk], ledger: Mapping[str, LedgerEntry], fingerprint: str
) -> Plan:
    """What to do to make a namespace whose ledger is ``ledger`` hold exactly ``desired``.

    A ``pending`` ledger row (written or not, we cannot know) is re-upserted if still desired
    and deleted otherwise; its vector normally comes from the embedding cache.
    """
    plan = Plan()
    for cid, chunk in desired.items():
        entry = ledger.get(cid)
        if (
            entry is None
            or entry.state != WRITTEN
            or entry.fingerprint != fingerprint
            or entry.content_hash != chunk.content_hash
        ):
            plan.upsert.append(chunk)
        elif entry.metadata_hash != chunk.metadata_hash:
            plan.update_metadata.append(chunk)
        else:
            plan.unchanged += 1
    plan.delete = sorted(set(ledger) - set(desired))
    return plan


def by_length(
    hashes: list[str], texts: list[str], token_counts: list[int]
) -> tuple[list[str], list[str], list[int]]:
    """The texts to embed, longest first (ties keep plan order).

    A local model pads every text of one ``encode`` call to the longest, and sentence-
    transformers sorts by length only within a call: in document order, batches mix short and
    long chunks (1.36 padded tokens per real token measured on the demo, see BENCHMARKS.md).
    Sorted across the whole plan, each batch holds texts of nearly one length. Longest first so
    that a memory or input-size problem shows in the first window, not the last. Vectors are
    cached and batches acknowledged exactly as before; only the order of embedding changes.
    """
    order = sorted(range(len(texts)), key=lambda i: -token_counts[i])
    return (
        [hashes[i] for i in order],
        [texts[i] for i in order],
        [token_counts[i] for i in order],
    )


def mass_delete_refusal(
    spec: EmbeddingSpec,
    documents: int,
    served: set[str],
    desired: Mapping[str, Chunk],
    settings: Settings,
) -> str | None:
    """Why a run must not go on (the message), or ``None``: the mass-delete guard.

    A run that would leave out more than ``INDEX_MAX_DELETE_FRACTION`` of the chunks the
    namespace serves (``served``: their ids), and more than ``INDEX_MASS_DELETE_MIN_CHUNKS`` of
    them, or all of them because the documents model is empty, is far more often an upstream
    failure (a scrape that failed, an API outage, a wrong dbt filter) than a real deletion, so it
    stops before writing. ``INDEX_ALLOW_MASS_DELETE`` confirms a real one.
    """
    if not served or settings.index_allow_mass_delete:
        return None
    removed = len(served - desired.keys())
    limit = settings.index_max_delete_fraction
    emptied = documents == 0  # however small the namespace: nothing left to serve
    small = removed <= settings.index_mass_delete_min_chunks
    if not emptied and (removed <= limit * len(served) or small):
        return None
    if documents == 0:
        why = f"the documents model {spec.model} returned no rows"
    else:
        why = f"the documents model {spec.model} now has {documents} documents"
        why += f" ({len(desired)} chunks)"
    return (
        f"Indexing {spec.namespace} would delete {removed} of the {len(served)} chunks it serves "
        f"({removed / len(served):.0%}; INDEX_MAX_DELETE_FRACTION={limit:g}): {why}. That "
        "usually means an upstream failure (a failed scrape, an API outage, a wrong dbt filter), "
        "so nothing was deleted and the index still serves what it had. If the deletion is "
        "real, re-run with INDEX_ALLOW_MASS_DELETE=true (`python -m tasks.index.run "
        "--allow-mass-delete`)."
    )


def index_documents(
    spec: EmbeddingSpec,
    warehouse: Warehouse,
    embedder: Embedder,
    store: VectorStore,
    on_progress: ProgressCallback | None = None,
    *,
    settings: Settings | None = None,
    dry_run: bool | None = None,
) -> IndexResult:
    """Bring ``spec.namespace`` in the store in line with the documents of ``spec``.

    ``on_progress`` receives a :class:`tasks.progress.PhaseUpdate` at the start and end of each
    phase (chunking, planning, embedding, writing) and every few seconds in between.

    Raises:
        EmbeddingBudgetExceeded: the run would send more than ``MAX_TOKENS_PER_RUN`` tokens
            (nothing was embedded or written).
        ValidationFailed: after writing, the ledger, the store and the documents disagree.
    """
    settings = settings or get_settings()
    progress = Progress(spec.namespace, on_progress)
    dry_run = settings.index_dry_run if dry_run is None else dry_run
    logical = spec.namespace
    config = chunker_config(settings, embedder)
    fingerprint = index_fingerprint(embedder, config)
    result = IndexResult(
        namespace=logical, model=spec.model, fingerprint=fingerprint, dry_run=dry_run
    )
    ledger = Ledger(warehouse, settings.index_state_schema)
    cache = EmbeddingCache(settings.index_state_schema)
    try:
        ledger.setup()
        with ledger.lock(logical, settings.index_lock_wait_s):
            registered = ledger.namespaces(logical)
            serving = next((n for n in registered if n.state == "serving"), None)
            target = choose_target(logical, fingerprint, registered)
            result.physical_namespace = target
            result.rebuilt = serving is None or serving.physical != target
            desired = _desired_chunks(spec, warehouse, embedder, config, result, progress)
            planning = progress.phase("planning", len(desired))
            entries = ledger.entries(target)
            if not entries and not dry_run:
                entries = _adopt_unknown(store, target, fingerprint)
            plan = plan_changes(desired, entries, fingerprint)
            result.unchanged = plan.unchanged

            hashes = [c.content_hash for c in plan.upsert]
            cached = cache.get(ledger.conn, embedder.fingerprint, hashes)
            to_embed = list(
                dict.fromkeys(c.content_hash for c in plan.upsert if c.content_hash not in cached)
            )
            by_hash = {c.content_hash: c for c in plan.upsert}
            texts = [by_hash[h].text for h in to_embed]
            planning.advance(len(desired) - len(texts))  # classified; nothing left to count
            token_counts: list[int] = []
            for part in _slices(texts, COUNT_SLICE):
                token_counts += embedder.count_tokens(part)
                planning.advance(len(part))
            to_embed, texts, token_counts = by_length(to_embed, texts, token_counts)
            planning.finish()
            price = embedder.price_per_million(settings.embedding_prices)
            result.embedded = len(to_embed)
            result.tokens_to_embed = sum(token_counts)
            result.cache_hits = sum(1 for c in plan.upsert if c.content_hash in cached)
            result.metadata_updated = len(plan.update_metadata)
            result.deleted = len(plan.delete)
            result.upserted = len(plan.upsert)
            result.estimated_cost_usd = result.tokens_to_embed * price / 1e6
            # What users search today: the target itself, or (a rebuild replacing it) the old one.
            if serving is None:
                served: set[str] = set()
            elif serving.physical == target:
                served = set(entries)
            else:
                served = set(ledger.entries(serving.physical))
            refusal = mass_delete_refusal(spec, result.documents, served, desired, settings)
            if dry_run:
                if refusal:
                    logger.warning("Dry run: a real run would stop here: %s", refusal)
                logger.info("Dry run: %s", result.to_text())
                return result
            if refusal:
                raise MassDeleteRefused(refusal)
            budget = settings.max_tokens_per_run
            if budget is not None and result.tokens_to_embed > budget:
                raise EmbeddingBudgetExceeded(
                    f"Indexing {logical} would embed {result.tokens_to_embed} tokens "
                    f"({len(to_embed)} chunks, ~${result.estimated_cost_usd:.4f}), over "
                    f"MAX_TOKENS_PER_RUN={budget}. Nothing was sent. Raise the budget, or run "
                    "with INDEX_DRY_RUN=true to see the plan."
                )

            run_id = ledger.start_run(
                logical, target, embedder.provider, embedder.model, fingerprint, False
            )
            result.run_id = run_id
            before = embedder.usage.snapshot()
            try:
                _apply(
                    plan, texts, to_embed, token_counts, cached, target, logical, fingerprint,
                    ledger, cache, embedder, store, settings, progress,
                )  # fmt: skip
                used = embedder.usage.minus(before)
                result.requests = used.requests
                result.input_tokens = used.input_tokens
                result.estimated_cost_usd = used.input_tokens * price / 1e6
                _validate_and_switch(
                    ledger, store, cache, embedder, logical, target, desired, result, settings
                )
            except BaseException as exc:
                used = embedder.usage.minus(before)
                ledger.finish_run(
                    run_id,
                    "failed",
                    {
                        "requests": used.requests,
                        "input_tokens": used.input_tokens,
                        "estimated_cost_usd": used.input_tokens * price / 1e6,
                        "error": f"{type(exc).__name__}: {exc}"[:2000],
                    },
                )
                raise
            ledger.finish_run(run_id, "completed", asdict(result))
            if settings.embedding_cache_retention_days:
                pruned = cache.prune(ledger.conn, settings.embedding_cache_retention_days)
                result.cache_pruned = pruned or 0
    finally:
        ledger.close()
    logger.info("Indexed %s", result.to_text())
    return result


def _desired_chunks(
    spec: EmbeddingSpec,
    warehouse: Warehouse,
    embedder: Embedder,
    config: ChunkerConfig,
    result: IndexResult,
    progress: Progress,
) -> dict[str, Chunk]:
    desired: dict[str, Chunk] = {}
    chunking = progress.phase("chunking", count_documents(warehouse, spec), unit="documents")
    for doc in fetch_documents(warehouse, spec):
        result.documents += 1
        if not doc.text:
            logger.warning("Document %s of %s has no text; not indexed", doc.id, spec.model)
        else:
            for chunk in document_chunks(doc, config, embedder.count_tokens):
                desired[chunk.id] = chunk
        chunking.advance()
    chunking.finish()  # documents added since the count: the phase still ends at 100 %
    result.chunks = len(desired)
    return desired


def _adopt_unknown(store: VectorStore, namespace: str, fingerprint: str) -> dict[str, LedgerEntry]:
    """Records in a namespace the ledger knows nothing about (ledger lost, older version).

    They are treated as ``pending``: re-upserted if desired, deleted otherwise, so the store never
    keeps orphans the ledger cannot see.
    """
    found = store.content_hashes(namespace)
    if found:
        logger.warning(
            "Namespace %s holds %d records the ledger does not know; reconciling them",
            namespace,
            len(found),
        )
    return {i: LedgerEntry(i, "", h, "", fingerprint, PENDING) for i, h in found.items()}


def _apply(
    plan: Plan,
    texts: list[str],
    to_embed: list[str],
    token_counts: list[int],
    cached: dict[str, list[float]],
    target: str,
    logical: str,
    fingerprint: str,
    ledger: Ledger,
    cache: EmbeddingCache,
    embedder: Embedder,
    store: VectorStore,
    settings: Settings,
    progress: Progress,
) -> None:
    """Write the plan: deletes, metadata updates, then embed window by window and upsert."""
    size = settings.index_batch_size
    if plan.delete or plan.upsert or plan.update_metadata:
        store.ensure_namespace(target, embedder.dimension)
    ledger.register(logical, target, fingerprint)
    writing = progress.phase(
        "writing", len(plan.delete) + len(plan.update_metadata) + len(plan.upsert)
    )
    embedding = progress.phase("embedding", len(to_embed))

    for ids in _slices(plan.delete, size):
        store.delete(target, ids)
        ledger.remove(target, ids)
        writing.advance(len(ids))
    for chunks in _slices(plan.update_metadata, size):
        store.update_metadata(target, [(c.id, c.metadata) for c in chunks])
        ledger.update_metadata(target, chunks)
        writing.advance(len(chunks))

    vectors = dict(cached)
    waiting = list(plan.upsert)

    def flush() -> None:
        nonlocal waiting
        ready = [c for c in waiting if c.content_hash in vectors]
        waiting = [c for c in waiting if c.content_hash not in vectors]
        for batch in _slices(ready, size):
            # pending first: if we die after the store wrote but before "written", the next run
            # still knows these ids may exist (and re-upserts or deletes them).
            ledger.mark_pending(target, logical, fingerprint, batch)
            store.upsert(
                target,
                [
                    VectorRecord(
                        id=c.id,
                        document_id=c.document_id,
                        values=vectors[c.content_hash],
                        text=c.text,
                        content_hash=c.content_hash,
                        metadata=c.metadata,
                    )
                    for c in batch
                ],
            )
            ledger.mark_written(target, logical, fingerprint, batch)
            writing.advance(len(batch))

    flush()  # cache hits cost nothing: write them first
    for start, end in embedder.windows(token_counts):
        window = embedder.embed(texts[start:end])
        fresh = dict(zip(to_embed[start:end], window, strict=True))
        with ledger.conn.transaction():
            cache.put(ledger.conn, embedder.fingerprint, fresh)
        vectors.update(fresh)
        embedding.advance(end - start)
        flush()
    embedding.finish()
    if waiting:
        raise RuntimeError(f"{len(waiting)} chunks got no vector")  # a bug, not a data problem
    writing.finish()


def _validate_and_switch(
    ledger: Ledger,
    store: VectorStore,
    cache: EmbeddingCache,
    embedder: Embedder,
    logical: str,
    target: str,
    desired: dict[str, Chunk],
    result: IndexResult,
    settings: Settings,
) -> None:
    """Check ledger == store == desired; switch a rebuilt namespace over; drop old ones."""
    counts = ledger.counts(target)
    in_store = store.count(target)
    result.vectors_in_store = in_store
    problems = []
    if counts.get(PENDING, 0):
        problems.append(f"{counts[PENDING]} ledger rows still pending")
    if counts.get(WRITTEN, 0) != len(desired):
        problems.append(f"ledger has {counts.get(WRITTEN, 0)} written chunks, want {len(desired)}")
    if in_store != len(desired):
        problems.append(f"store has {in_store} vectors, want {len(desired)}")
    if desired and not problems:
        probe = next(iter(desired.values()))
        vector = cache.get(ledger.conn, embedder.fingerprint, [probe.content_hash])
        # Without a cached vector (cache purged) the probe is skipped rather than paid for.
        if vector and not store.query(target, vector[probe.content_hash], 1):
            problems.append("a probe query returned nothing")
    if problems:
        raise ValidationFailed(
            f"Namespace {target} (for {logical}) is not consistent after indexing: "
            + "; ".join(problems)
            + ". Re-run indexing; if it persists, delete the namespace's ledger rows to rebuild."
        )
    if result.rebuilt:
        ledger.switch(logical, target)
        result.switched = True
        logger.info("Namespace %s now served by %s", logical, target)
    if settings.drop_retired_namespaces:
        for entry in ledger.namespaces(logical):
            if entry.physical != target and entry.state in ("retired", "building"):
                store.drop_namespace(entry.physical)
                ledger.forget_namespace(entry.physical)
                logger.info("Dropped old namespace %s of %s", entry.physical, logical)


def _slices(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
