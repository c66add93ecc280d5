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

:func:`index_documents` runs these steps of an :class:`IndexRun` (``plan``, ``check``,
``apply``, ``validate_and_switch``) under the namespace's lock.

The index fingerprint (embedder fingerprint + chunker settings) picks the physical namespace, so a
new model or chunk size is built next to the serving one (see :mod:`tasks.index.namespaces`).

``semantic-index index [--dry-run]`` indexes every declared model with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass, field
from typing import Any

from tasks.embedders.base import Embedder, EmbeddingBudgetExceeded, Rejection
from tasks.errors import MassDeleteRefused, ValidationFailed
from tasks.index.chunking import (
    Chunk,
    ChunkerConfig,
    chunk_id,
    chunk_pieces,
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
    #: Chunks the embedding provider rejected (not written; kept in the ledger's dead letters
    #: and retried by every run: docs/indexing.md "Dead letters").
    dead_letters: int = 0

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
        if self.dead_letters:
            text += (
                f"; {self.dead_letters} chunks rejected by the embedding provider (dead "
                "letters: fix them, then `semantic-index replay`)"
            )
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
        sections=settings.chunk_sections,
        heading_prefix=settings.chunk_heading_prefix,
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
    pieces = chunk_pieces(doc.text, doc.title, config, count, doc.sections)
    for position, (text, tokens, heading_path) in enumerate(astuple(p) for p in pieces):
        metadata = {**base, "chunk_position": position}
        if heading_path:
            metadata["heading_path"] = heading_path
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
        "real, re-run with INDEX_ALLOW_MASS_DELETE=true (`semantic-index index "
        "--allow-mass-delete`)."
    )


@dataclass
class RunPlan:
    """What one run will do, decided before anything is written: the diff against the ledger,
    the texts to embed (cache misses, longest first) and whether the mass-delete guard objects."""

    changes: Plan
    #: Every chunk the namespace must hold afterwards, by id.
    desired: dict[str, Chunk]
    #: Vectors of chunks to upsert found in the embedding cache, by content hash.
    cached: dict[str, list[float]]
    #: Content hashes to embed, their texts and token counts, in embedding order
    #: (:func:`by_length`).
    to_embed: list[str]
    texts: list[str]
    token_counts: list[int]
    #: Why the mass-delete guard stops the run (:func:`mass_delete_refusal`), or ``None``.
    refusal: str | None = None


@dataclass
class IndexRun:
    """One run of one documents model into the physical namespace its fingerprint picks.

    The steps, which :func:`index_documents` calls in this order under the ledger's lock, and
    which can be called (and tested) one by one: :meth:`plan` (reads only), :meth:`check`
    (refuses an unsafe or over-budget run), :meth:`apply` (writes, acknowledged batch by batch)
    and :meth:`validate_and_switch`; :meth:`recorded` keeps the run's row in the ledger around
    the writing steps. Each step fills in :attr:`result`.
    """

    spec: EmbeddingSpec
    warehouse: Warehouse
    embedder: Embedder
    store: VectorStore
    ledger: Ledger
    cache: EmbeddingCache
    settings: Settings
    progress: Progress
    config: ChunkerConfig
    fingerprint: str
    #: The physical namespace this run writes into.
    target: str
    #: The physical namespace serving the logical one when the run started (``None``: none yet).
    serving: str | None
    dry_run: bool
    result: IndexResult

    @classmethod
    def open(
        cls,
        spec: EmbeddingSpec,
        warehouse: Warehouse,
        embedder: Embedder,
        store: VectorStore,
        *,
        ledger: Ledger,
        cache: EmbeddingCache,
        settings: Settings,
        progress: Progress | None = None,
        dry_run: bool = False,
    ) -> IndexRun:
        """A run of ``spec``, its target chosen from the namespace registry (hold
        ``ledger.lock(spec.namespace)`` meanwhile: another run could register one)."""
        logical = spec.namespace
        config = chunker_config(settings, embedder)
        fingerprint = index_fingerprint(embedder, config)
        serving = ledger.serving(logical)
        target = choose_target(logical, fingerprint, ledger.namespaces(logical))
        result = IndexResult(
            namespace=logical,
            model=spec.model,
            fingerprint=fingerprint,
            dry_run=dry_run,
            physical_namespace=target,
            rebuilt=serving != target,
        )
        return cls(
            spec=spec,
            warehouse=warehouse,
            embedder=embedder,
            store=store,
            ledger=ledger,
            cache=cache,
            settings=settings,
            progress=progress or Progress(logical, None),
            config=config,
            fingerprint=fingerprint,
            target=target,
            serving=serving,
            dry_run=dry_run,
            result=result,
        )

    @property
    def logical(self) -> str:
        """The logical namespace (what search asks for)."""
        return self.spec.namespace

    @property
    def price(self) -> float:
        """The embedder's price in USD per million input tokens (``EMBEDDING_PRICES``)."""
        return self.embedder.price_per_million(self.settings.embedding_prices)

    def plan(self) -> RunPlan:
        """Chunk the documents, diff them against the target's ledger, take what the embedding
        cache has, count and price the rest, and ask the mass-delete guard. Writes nothing
        (except that a real run reads unknown records of an empty ledger from the store)."""
        result = self.result
        desired = self._desired_chunks()
        planning = self.progress.phase("planning", len(desired))
        entries = self.ledger.entries(self.target)
        if not entries and not self.dry_run:
            entries = _adopt_unknown(self.store, self.target, self.fingerprint)
        changes = plan_changes(desired, entries, self.fingerprint)
        result.unchanged = changes.unchanged

        hashes = [c.content_hash for c in changes.upsert]
        cached = self.cache.get(self.ledger.conn, self.embedder.fingerprint, hashes)
        to_embed = list(
            dict.fromkeys(c.content_hash for c in changes.upsert if c.content_hash not in cached)
        )
        by_hash = {c.content_hash: c for c in changes.upsert}
        texts = [by_hash[h].text for h in to_embed]
        planning.advance(len(desired) - len(texts))  # classified; nothing left to count
        token_counts: list[int] = []
        for part in slices(texts, COUNT_SLICE):
            token_counts += self.embedder.count_tokens(part)
            planning.advance(len(part))
        to_embed, texts, token_counts = by_length(to_embed, texts, token_counts)
        planning.finish()
        result.embedded = len(to_embed)
        result.tokens_to_embed = sum(token_counts)
        result.cache_hits = sum(1 for c in changes.upsert if c.content_hash in cached)
        result.metadata_updated = len(changes.update_metadata)
        result.deleted = len(changes.delete)
        result.upserted = len(changes.upsert)
        result.estimated_cost_usd = result.tokens_to_embed * self.price / 1e6
        # What users search today: the target itself, or (a rebuild replacing it) the old one.
        if self.serving is None:
            served: set[str] = set()
        elif self.serving == self.target:
            served = set(entries)
        else:
            served = set(self.ledger.entries(self.serving))
        refusal = mass_delete_refusal(self.spec, result.documents, served, desired, self.settings)
        return RunPlan(changes, desired, cached, to_embed, texts, token_counts, refusal)

    def check(self, plan: RunPlan) -> None:
        """Refuse a plan that must not be written.

        Raises:
            MassDeleteRefused: the mass-delete guard objects (:attr:`RunPlan.refusal`).
            EmbeddingBudgetExceeded: it would send more than ``MAX_TOKENS_PER_RUN`` tokens.
        """
        if plan.refusal:
            raise MassDeleteRefused(plan.refusal)
        budget = self.settings.max_tokens_per_run
        result = self.result
        if budget is not None and result.tokens_to_embed > budget:
            raise EmbeddingBudgetExceeded(
                f"Indexing {self.logical} would embed {result.tokens_to_embed} tokens "
                f"({len(plan.to_embed)} chunks, ~${result.estimated_cost_usd:.4f}), over "
                f"MAX_TOKENS_PER_RUN={budget}. Nothing was sent. Raise the budget, or run "
                "with INDEX_DRY_RUN=true to see the plan."
            )

    @contextmanager
    def recorded(self) -> Iterator[int]:
        """Keep this run's row in the ledger's ``runs`` around the block (yields its id): closed
        ``completed`` with the result, or ``failed`` with the usage so far and the error."""
        run_id = self.ledger.start_run(
            self.logical,
            self.target,
            self.embedder.provider,
            self.embedder.model,
            self.fingerprint,
            False,
        )
        self.result.run_id = run_id
        before = self.embedder.usage.snapshot()
        try:
            yield run_id
        except BaseException as exc:
            used = self.embedder.usage.minus(before)
            self.ledger.finish_run(
                run_id,
                "failed",
                {
                    "requests": used.requests,
                    "input_tokens": used.input_tokens,
                    "estimated_cost_usd": used.input_tokens * self.price / 1e6,
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                },
            )
            raise
        self.ledger.finish_run(run_id, "completed", asdict(self.result))

    def apply(self, plan: RunPlan) -> None:
        """Write the plan: deletes, metadata updates, then embed window by window and upsert.

        Each window's vectors go to the embedding cache as soon as they exist; each batch's
        ledger rows go ``pending`` before it is sent and ``written`` once the store acknowledged
        it, so a run killed anywhere is resumed by the next one.

        Chunks whose text the provider rejects (:meth:`Embedder.embed_partial`) are neither
        written nor acknowledged: they go to the ledger's dead letters (with any vector of an
        earlier text of theirs removed), and the next run tries them again.
        """
        changes, target, size = plan.changes, self.target, self.settings.index_batch_size
        ledger, store, embedder = self.ledger, self.store, self.embedder
        before = embedder.usage.snapshot()
        if changes.delete or changes.upsert or changes.update_metadata:
            store.ensure_namespace(target, embedder.dimension)
        ledger.register(self.logical, target, self.fingerprint)
        writing = self.progress.phase(
            "writing", len(changes.delete) + len(changes.update_metadata) + len(changes.upsert)
        )
        embedding = self.progress.phase("embedding", len(plan.to_embed))

        for ids in slices(changes.delete, size):
            store.delete(target, ids)
            ledger.remove(target, ids)
            writing.advance(len(ids))
        for chunks in slices(changes.update_metadata, size):
            store.update_metadata(target, [(c.id, c.metadata) for c in chunks])
            ledger.update_metadata(target, chunks)
            writing.advance(len(chunks))

        vectors = dict(plan.cached)
        waiting = list(changes.upsert)

        def flush() -> None:
            nonlocal waiting
            ready = [c for c in waiting if c.content_hash in vectors]
            waiting = [c for c in waiting if c.content_hash not in vectors]
            for batch in slices(ready, size):
                # pending first: if we die after the store wrote but before "written", the next
                # run still knows these ids may exist (and re-upserts or deletes them).
                ledger.mark_pending(target, self.logical, self.fingerprint, batch)
                store.upsert(target, [chunk_record(c, vectors[c.content_hash]) for c in batch])
                ledger.mark_written(target, self.logical, self.fingerprint, batch)
                writing.advance(len(batch))

        def reject(rejections: dict[str, Rejection]) -> None:
            nonlocal waiting
            dead = [c for c in waiting if c.content_hash in rejections]
            waiting = [c for c in waiting if c.content_hash not in rejections]
            ids = [c.id for c in dead]
            if not ids:
                return
            # An earlier text of a rejected chunk may be in the store: it is not what the
            # document says any more, and the namespace must hold desired minus dead letters.
            store.delete(target, ids)
            ledger.remove(target, ids)
            ledger.record_dead_letters(
                target,
                self.logical,
                self.result.run_id,
                [(c, rejections[c.content_hash].error_class, rejections[c.content_hash].message)
                 for c in dead],
            )  # fmt: skip
            rejected_ids.extend(ids)
            writing.advance(len(dead))

        rejected_ids: list[str] = []
        rejected_hashes = 0
        flush()  # cache hits cost nothing: write them first
        for start, end in embedder.windows(plan.token_counts):
            # The plan counted these tokens already: embed does not count them again.
            window, rejections = embedder.embed_partial(
                plan.texts[start:end], token_counts=plan.token_counts[start:end]
            )
            hashes = plan.to_embed[start:end]
            fresh = {hashes[i]: vector for i, vector in window.items()}
            with ledger.conn.transaction():
                self.cache.put(ledger.conn, embedder.fingerprint, fresh)
            vectors.update(fresh)
            if rejections:
                reject({hashes[i]: r for i, r in rejections.items()})
                rejected_hashes += len(rejections)
            embedding.advance(end - start)
            flush()
        embedding.finish()
        recovered = ledger.clear_dead_letters(target, keep=rejected_ids)
        if recovered:
            logger.info("%d dead letters of %s are gone (embedded or removed)", recovered, target)
        self.result.dead_letters = len(rejected_ids)
        self.result.embedded -= rejected_hashes
        self.result.upserted -= len(rejected_ids)
        if rejected_ids:
            logger.warning(
                "%d chunks of %s were rejected by the embedding provider and not indexed; "
                "see %s.dead_letters",
                len(rejected_ids),
                self.logical,
                ledger.schema,
            )
        if waiting:
            raise RuntimeError(f"{len(waiting)} chunks got no vector")  # a bug, not a data problem
        writing.finish()
        used = embedder.usage.minus(before)
        self.result.requests = used.requests
        self.result.input_tokens = used.input_tokens
        self.result.estimated_cost_usd = used.input_tokens * self.price / 1e6

    def validate_and_switch(self, plan: RunPlan) -> None:
        """Check ledger == store == desired; switch a rebuilt namespace over; drop old ones.

        Raises:
            ValidationFailed: they disagree (nothing is switched or dropped).
        """
        ledger, store, target, desired = self.ledger, self.store, self.target, plan.desired
        counts = ledger.counts(target)
        in_store = store.count(target)
        self.result.vectors_in_store = in_store
        # Dead letters are visible (result, report, validation) but do not fail the run.
        dead = {d.chunk_id for d in ledger.dead_letters(target)}
        want = len(desired) - len(dead & desired.keys())
        problems = []
        if counts.get(PENDING, 0):
            problems.append(f"{counts[PENDING]} ledger rows still pending")
        if counts.get(WRITTEN, 0) != want:
            written = counts.get(WRITTEN, 0)
            problems.append(f"ledger has {written} written chunks, want {want}")
        if in_store != want:
            problems.append(f"store has {in_store} vectors, want {want}")
        if want and not problems:
            probe = next(c for c in desired.values() if c.id not in dead)
            vector = self.cache.get(ledger.conn, self.embedder.fingerprint, [probe.content_hash])
            # Without a cached vector (cache purged) the probe is skipped rather than paid for.
            if vector and not store.query(target, vector[probe.content_hash], 1):
                problems.append("a probe query returned nothing")
        if problems:
            raise ValidationFailed(
                f"Namespace {target} (for {self.logical}) is not consistent after indexing: "
                + "; ".join(problems)
                + ". Re-run indexing; if it persists, delete the namespace's ledger rows to "
                "rebuild."
            )
        if self.result.rebuilt:
            ledger.switch(self.logical, target)
            self.result.switched = True
            logger.info("Namespace %s now served by %s", self.logical, target)
        if self.settings.drop_retired_namespaces:
            for entry in ledger.namespaces(self.logical):
                if entry.physical != target and entry.state in ("retired", "building"):
                    store.drop_namespace(entry.physical)
                    ledger.forget_namespace(entry.physical)
                    logger.info("Dropped old namespace %s of %s", entry.physical, self.logical)

    def prune_cache(self) -> None:
        """Prune embedding cache entries no chunk uses (``EMBEDDING_CACHE_RETENTION_DAYS``)."""
        days = self.settings.embedding_cache_retention_days
        if days:
            pruned = self.cache.prune(self.ledger.conn, days, self.ledger.hashes_in_use())
            self.result.cache_pruned = pruned or 0

    def _desired_chunks(self) -> dict[str, Chunk]:
        """Every chunk of every document of the model (counts documents in :attr:`result`)."""
        spec, result = self.spec, self.result
        desired: dict[str, Chunk] = {}
        chunking = self.progress.phase(
            "chunking", count_documents(self.warehouse, spec), unit="documents"
        )
        for doc in fetch_documents(self.warehouse, spec):
            result.documents += 1
            if not doc.text:
                logger.warning("Document %s of %s has no text; not indexed", doc.id, spec.model)
            else:
                for chunk in document_chunks(doc, self.config, self.embedder.count_tokens):
                    desired[chunk.id] = chunk
            chunking.advance()
        chunking.finish()  # documents added since the count: the phase still ends at 100 %
        result.chunks = len(desired)
        return desired


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
        MassDeleteRefused: the run would delete most of what the namespace serves.
        ValidationFailed: after writing, the ledger, the store and the documents disagree.
    """
    settings = settings or get_settings()
    progress = Progress(spec.namespace, on_progress)
    dry_run = settings.index_dry_run if dry_run is None else dry_run
    ledger = Ledger(warehouse, settings.index_state_schema)
    cache = EmbeddingCache(settings.index_state_schema)
    try:
        ledger.setup()
        cache.setup(ledger.conn)
        with ledger.lock(spec.namespace, settings.index_lock_wait_s):
            run = IndexRun.open(
                spec,
                warehouse,
                embedder,
                store,
                ledger=ledger,
                cache=cache,
                settings=settings,
                progress=progress,
                dry_run=dry_run,
            )
            plan = run.plan()
            if dry_run:
                if plan.refusal:
                    logger.warning("Dry run: a real run would stop here: %s", plan.refusal)
                logger.info("Dry run: %s", run.result.to_text())
                return run.result
            run.check(plan)
            with run.recorded():
                run.apply(plan)
                run.validate_and_switch(plan)
            run.prune_cache()
    finally:
        ledger.close()
    logger.info("Indexed %s", run.result.to_text())
    return run.result


@dataclass(frozen=True)
class Replay:
    """What re-indexing a namespace with dead letters did (:func:`replay_dead_letters`)."""

    #: Dead letters of the namespace before the run.
    before: int
    result: IndexResult

    @property
    def recovered(self) -> int:
        """Dead letters the run embedded and indexed (or found no longer wanted)."""
        return max(0, self.before - self.result.dead_letters)

    def to_text(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.result.namespace}: {self.recovered} of {self.before} dead letters recovered, "
            f"{self.result.dead_letters} still rejected; {self.result.to_text()}"
        )


def replay_dead_letters(
    specs: Sequence[EmbeddingSpec],
    warehouse: Warehouse,
    embedder: Embedder,
    store: Callable[[], VectorStore],
    *,
    settings: Settings | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[Replay]:
    """Index again the namespaces of ``specs`` that have dead letters (after a fix).

    Nothing special happens to the rejected chunks: they were never acknowledged, so the normal
    incremental run plans them again (and only them, plus whatever else changed). ``store``
    makes one store per namespace (closed here).
    """
    settings = settings or get_settings()
    ledger = Ledger(warehouse, settings.index_state_schema)
    try:
        ledger.setup()
        counts = ledger.dead_letter_counts()
    finally:
        ledger.close()
    replays = []
    for spec in specs:
        if not counts.get(spec.namespace):
            continue
        vectors = store()
        try:
            result = index_documents(
                spec, warehouse, embedder, vectors, on_progress, settings=settings, dry_run=False
            )
        finally:
            vectors.close()
        replays.append(Replay(counts[spec.namespace], result))
    return replays


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


def chunk_record(chunk: Chunk, values: list[float]) -> VectorRecord:
    """The store record of ``chunk`` with its vector."""
    return VectorRecord(
        id=chunk.id,
        document_id=chunk.document_id,
        values=values,
        text=chunk.text,
        content_hash=chunk.content_hash,
        metadata=chunk.metadata,
    )


def slices(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
