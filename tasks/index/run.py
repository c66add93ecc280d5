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
``apply``, ``validate_and_switch``) under the namespace's lock. With ``INDEX_SHARDS`` > 1 the
pages of ``apply`` are written by shards on Dask instead (:mod:`tasks.index.sharding`).

The index fingerprint (embedder fingerprint + chunker settings) picks the physical namespace, so a
new model or chunk size is built next to the serving one (see :mod:`tasks.index.namespaces`).

``semantic-index index [--dry-run]`` indexes every declared model with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol

from tasks.embedders.base import Embedder, EmbeddingBudgetExceeded, Rejection, Usage
from tasks.embedders.openai import OpenAIEmbedder
from tasks.errors import MassDeleteRefused, ValidationFailed
from tasks.index.batch_backfill import backfill_through_batch_api
from tasks.index.chunking import (
    Chunk,
    ChunkerConfig,
    chunk_id,
    chunk_pieces,
    metadata_hash,
    text_hash,
)
from tasks.index.documents import (
    Document,
    EmbeddingSpec,
    count_documents,
    fetch_documents,
    relation,
)
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import PENDING, WRITTEN, Ledger, LedgerEntry
from tasks.index.namespaces import choose_target
from tasks.index.switch_gate import check_switch_gate
from tasks.ops.versions import collect_versions
from tasks.progress import Phase, Progress, ProgressCallback
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


def chunker_config(
    settings: Settings, embedder: Embedder, spec: EmbeddingSpec | None = None
) -> ChunkerConfig:
    """The chunker settings for ``embedder`` (chunk size capped at its input limit) and the
    documents model ``spec``: the section switches apply only to a model that declares a
    ``sections_column``, so every other index keeps its fingerprint (and is not rebuilt)."""
    max_tokens = min(settings.chunk_tokens or DEFAULT_CHUNK_TOKENS, embedder.max_input_tokens)
    sections = settings.chunk_sections and spec is not None and spec.sections_column is not None
    return ChunkerConfig(
        max_tokens=max_tokens,
        overlap_tokens=min(settings.chunk_overlap_tokens, max_tokens // 2),
        prepend_title=settings.chunk_prepend_title,
        sections=sections,
        heading_prefix=sections and settings.chunk_heading_prefix,
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
    served: int,
    removed: int,
    desired: int,
    settings: Settings,
) -> str | None:
    """Why a run must not go on (the message), or ``None``: the mass-delete guard.

    A run that would leave out more than ``INDEX_MAX_DELETE_FRACTION`` of the ``served`` chunks
    of the namespace (``removed`` of them), and more than ``INDEX_MASS_DELETE_MIN_CHUNKS``, or
    all of them because the documents model is empty, is far more often an upstream failure (a
    scrape that failed, an API outage, a wrong dbt filter) than a real deletion, so it stops
    before writing. ``INDEX_ALLOW_MASS_DELETE`` confirms a real one. ``desired``: the chunks the
    namespace would hold afterwards.
    """
    if not served or settings.index_allow_mass_delete:
        return None
    limit = settings.index_max_delete_fraction
    emptied = documents == 0  # however small the namespace: nothing left to serve
    small = removed <= settings.index_mass_delete_min_chunks
    if not emptied and (removed <= limit * served or small):
        return None
    if documents == 0:
        why = f"the documents model {spec.model} returned no rows"
    else:
        why = f"the documents model {spec.model} now has {documents} documents"
        why += f" ({desired} chunks)"
    return (
        f"Indexing {spec.namespace} would delete {removed} of the {served} chunks it serves "
        f"({removed / served:.0%}; INDEX_MAX_DELETE_FRACTION={limit:g}): {why}. That "
        "usually means an upstream failure (a failed scrape, an API outage, a wrong dbt filter), "
        "so nothing was deleted and the index still serves what it had. If the deletion is "
        "real, re-run with INDEX_ALLOW_MASS_DELETE=true (`semantic-index index "
        "--allow-mass-delete`)."
    )


def document_changes(page: PagePlan, rejected: Iterable[str] = ()) -> dict[str, str]:
    """``{document id: 'added' | 'changed' | 'deleted'}``: what writing ``page`` did to its
    changed documents (``rejected``: ids of its chunks the provider rejected), as the run
    records it in the ledger's ``run_documents``.

    A document is in the namespace while it has chunks there that were not rejected: one the
    target held no chunk of is ``added``, one left without any (no text any more, every chunk
    rejected) is ``deleted``, and one that stays is ``changed`` if anything of it was written
    or deleted. A document planned again with nothing to write (its recorded hash was missing:
    a ledger from before document hashes, a retried dead letter that is rejected again) gets
    no row, so a no-change run records nothing.
    """
    dead = set(rejected)
    before = set(page.known.values())
    dead_per_doc: dict[str, int] = {}
    touched: set[str] = set()
    for chunk in page.changes.upsert:
        if chunk.id not in dead:
            touched.add(chunk.document_id)
        else:
            dead_per_doc[chunk.document_id] = dead_per_doc.get(chunk.document_id, 0) + 1
            if chunk.id in page.known:  # an earlier text of it was deleted from the store
                touched.add(chunk.document_id)
    touched.update(c.document_id for c in page.changes.update_metadata)
    touched.update(page.known[cid] for cid in page.changes.delete if cid in page.known)
    out: dict[str, str] = {}
    for doc_id, (_, chunks) in page.changed.items():
        after = chunks - dead_per_doc.get(doc_id, 0) > 0
        if doc_id not in before:
            if after:
                out[doc_id] = "added"
        elif not after:
            out[doc_id] = "deleted"
        elif doc_id in touched:
            out[doc_id] = "changed"
    return out


def document_hash(doc: Document, fingerprint: str) -> str:
    """Hash of everything a document's chunks are made of (every :class:`Document` field) and
    of the index ``fingerprint`` (embedder and chunker config): equal hashes, equal chunks."""
    fields = {name: getattr(doc, name) for name in _DOCUMENT_FIELDS}
    payload = json.dumps([fingerprint, fields], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_DOCUMENT_FIELDS = [f.name for f in dataclass_fields(Document)]


@dataclass
class PagePlan:
    """The plan of one keyset page of documents (``after < id <= through``, id order).

    Only documents whose :func:`document_hash` differs from the ledger's (or that it does not
    know) are chunked and diffed; the others count as unchanged. A page that is not
    :attr:`held` keeps only its bounds and is planned again when written.
    """

    after: str | None
    through: str
    #: Changed documents: ``{id: (doc hash, chunks)}``, recorded once all their chunks are written.
    changed: dict[str, tuple[str, int]] = field(default_factory=dict)
    changes: Plan = field(default_factory=Plan)
    #: Vectors of chunks to upsert found in the embedding cache, by content hash.
    cached: dict[str, list[float]] = field(default_factory=dict)
    #: Content hashes to embed, their texts and token counts, longest first (:func:`by_length`).
    to_embed: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    held: bool = True
    #: Chunks of the namespace serving today this page would drop (the mass-delete guard).
    removed: int = 0
    #: ``{chunk id: document id}`` of the changed documents' chunks the target held when the
    #: page was planned (ledger rows, or records adopted from the store): which documents were
    #: in the namespace before (:func:`document_changes`).
    known: dict[str, str] = field(default_factory=dict)

    @property
    def held_chunks(self) -> int:
        """Chunks this page keeps in memory."""
        return len(self.changes.upsert) + len(self.changes.update_metadata)

    def drop_to_embed(self, hashes: Collection[str]) -> None:
        """Take ``hashes`` out of what this page still has to embed (texts and counts too)."""
        keep = [i for i, h in enumerate(self.to_embed) if h not in hashes]
        self.to_embed = [self.to_embed[i] for i in keep]
        self.texts = [self.texts[i] for i in keep]
        self.token_counts = [self.token_counts[i] for i in keep]

    def bounds(self) -> PagePlan:
        """This page without its contents (to be planned again when written)."""
        return PagePlan(self.after, self.through, held=False)


@dataclass
class RunPlan:
    """What one run will do, decided before anything is written: the pages of documents with
    something to do (:class:`PagePlan`), the chunks of documents gone from the model and whether
    the mass-delete guard objects. Its memory follows what changed, not the corpus."""

    #: Pages with changed documents, in id order (held ones with their chunks).
    pages: list[PagePlan]
    #: Chunks of documents no longer in the model (deleted first, found in SQL).
    orphans: int
    #: Chunks the namespace must hold afterwards.
    chunks: int
    #: Why the mass-delete guard stops the run (:func:`mass_delete_refusal`), or ``None``.
    refusal: str | None = None
    #: Records found in the store that an empty ledger did not know (:func:`_adopt_unknown`).
    adopted: dict[str, LedgerEntry] = field(default_factory=dict)

    @property
    def upsert(self) -> list[Chunk]:
        """The chunks to upsert of the held pages."""
        return [c for p in self.pages for c in p.changes.upsert]

    @property
    def cached(self) -> dict[str, list[float]]:
        """Cache hits of the held pages."""
        return {h: v for p in self.pages for h, v in p.cached.items()}

    @property
    def texts(self) -> list[str]:
        """Texts to embed of the held pages, page by page (longest first within a page)."""
        return [t for p in self.pages for t in p.texts]

    @property
    def token_counts(self) -> list[int]:
        """Token counts of :attr:`texts`."""
        return [n for p in self.pages for n in p.token_counts]


@dataclass(frozen=True)
class PagesWritten:
    """What a :class:`PageWriter` did: the ids of the chunks the provider rejected, and what
    embedders in other processes spent (``Usage()`` when all ran in this one)."""

    rejected_ids: list[str]
    usage: Usage


class PageWriter(Protocol):
    """Writes the pages of a plan somewhere else than the run's own process (the shards of
    :mod:`tasks.index.sharding`), as :meth:`IndexRun.apply` would write them one by one.

    Called by :meth:`IndexRun.apply` after the run registered its target and deleted the
    chunks of documents gone from the model; it must advance ``writing`` and ``embedding``
    and add what its pages changed to ``run.result`` (as :meth:`IndexRun._apply_page` does).
    """

    def __call__(
        self, run: IndexRun, pages: Sequence[PagePlan], writing: Phase, embedding: Phase
    ) -> PagesWritten:
        """Write ``pages`` of ``run``'s plan."""
        ...


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
    #: Writes the plan's pages elsewhere (``INDEX_SHARDS`` > 1); ``None``: in this process.
    write_pages: PageWriter | None = None

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
        config = chunker_config(settings, embedder, spec)
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
        """Read the documents in keyset pages, skip those whose document hash the ledger holds,
        chunk and diff the others against the target's ledger, take what the embedding cache
        has, count and price the rest, and ask the mass-delete guard. Writes nothing (except
        that a real run reads unknown records of an empty ledger from the store).

        Pages are kept in memory up to ``INDEX_PLAN_HELD_CHUNKS`` chunks; later ones keep only
        their bounds and :meth:`apply` plans them again (the same documents, unless they
        changed meanwhile: then the newer text is written, as a later run would).
        """
        result, ledger, spec = self.result, self.ledger, self.spec
        known = ledger.chunk_count(self.target)
        adopted: dict[str, LedgerEntry] = {}
        if not known and not self.dry_run:
            adopted = _adopt_unknown(self.store, self.target, self.fingerprint)
        served_ns = self.serving if self.serving != self.target else None
        chunking = self.progress.phase(
            "chunking", count_documents(self.warehouse, spec), unit="documents"
        )
        planning = self.progress.phase("planning", chunking.total, unit="documents")
        pages: list[PagePlan] = []
        held = 0
        removed = 0
        for docs, after in self._pages():
            page = self._plan_page(docs, after, adopted, chunking, served=served_ns)
            planning.advance(len(docs))
            removed += page.removed
            if not page.changed:
                continue
            if held + page.held_chunks > self.settings.index_plan_held_chunks and pages:
                page = page.bounds()
            held += page.held_chunks
            pages.append(page)
        chunking.finish()  # documents added since the count: the phase still ends at 100 %
        planning.finish()
        rel = relation(spec)
        orphans = 0
        if known:
            orphans = ledger.count_orphan_chunks(self.target, rel, spec.id_column)
        result.deleted += orphans
        if self.serving is None:
            served = 0
        elif served_ns is None:
            served = known
            removed += orphans
        else:
            served = ledger.chunk_count(served_ns)
            removed += ledger.count_orphan_chunks(served_ns, rel, spec.id_column)
        result.estimated_cost_usd = result.tokens_to_embed * self.price / 1e6
        refusal = mass_delete_refusal(
            spec, result.documents, served, removed, result.chunks, self.settings
        )
        return RunPlan(pages, orphans, result.chunks, refusal, adopted)

    def _pages(self) -> Iterator[tuple[list[Document], str | None]]:
        """The model's documents in pages of ``INDEX_PAGE_DOCUMENTS``, each with the id before
        it (``None`` for the first): one stream, one server-side cursor."""
        size = self.settings.index_page_documents
        page: list[Document] = []
        after: str | None = None
        for doc in fetch_documents(self.warehouse, self.spec):
            page.append(doc)
            if len(page) >= size:
                yield page, after
                after = page[-1].id
                page = []
        if page:
            yield page, after

    def _plan_page(
        self,
        docs: Sequence[Document],
        after: str | None,
        adopted: Mapping[str, LedgerEntry],
        chunking: Phase | None = None,
        *,
        served: str | None = None,
        count: bool = True,
    ) -> PagePlan:
        """The plan of one page of documents; adds its counts to :attr:`result` if ``count``.

        The documents whose hash the ledger holds (every chunk written, none rejected) are not
        chunked; the rest are chunked and diffed chunk by chunk as before. ``served``: the
        namespace serving today when it is not the target (a rebuild): the page's
        :attr:`PagePlan.removed` counts its chunks of the changed documents that are no longer
        desired, else the target's.
        """
        result, ledger, target = self.result, self.ledger, self.target
        hashes = {d.id: document_hash(d, self.fingerprint) for d in docs}
        same = ledger.unchanged_documents(target, self.fingerprint, hashes) if hashes else {}
        desired: dict[str, Chunk] = {}
        changed: dict[str, tuple[str, int]] = {}
        for doc in docs:
            if doc.id in same:
                continue
            chunks: list[Chunk] = []
            if not doc.text:
                logger.warning(
                    "Document %s of %s has no text; not indexed", doc.id, self.spec.model
                )
            else:
                chunks = document_chunks(doc, self.config, self.embedder.count_tokens)
                desired.update((c.id, c) for c in chunks)
            changed[doc.id] = (hashes[doc.id], len(chunks))
        if chunking is not None:
            chunking.advance(len(docs))
        entries = ledger.entries(target, list(changed)) if changed else {}
        known = {cid: e.document_id for cid, e in entries.items()}
        for cid in desired.keys() & adopted.keys():
            entries.setdefault(cid, adopted[cid])
            known.setdefault(cid, desired[cid].document_id)
        changes = plan_changes(desired, entries, self.fingerprint)
        hashes_up = [c.content_hash for c in changes.upsert]
        cached = self.cache.get(ledger.conn, self.embedder.fingerprint, hashes_up)
        to_embed = list(dict.fromkeys(h for h in hashes_up if h not in cached))
        by_hash = {c.content_hash: c for c in changes.upsert}
        texts = [by_hash[h].text for h in to_embed]
        token_counts: list[int] = []
        for part in slices(texts, COUNT_SLICE):
            token_counts += self.embedder.count_tokens(part)
        to_embed, texts, token_counts = by_length(to_embed, texts, token_counts)
        if count:
            unchanged = sum(same.values())
            result.documents += len(docs)
            result.chunks += unchanged + len(desired)
            result.unchanged += unchanged + changes.unchanged
            result.embedded += len(to_embed)
            result.tokens_to_embed += sum(token_counts)
            result.cache_hits += sum(1 for h in hashes_up if h in cached)
            result.metadata_updated += len(changes.update_metadata)
            result.deleted += len(changes.delete)
            result.upserted += len(changes.upsert)
        if served is None:
            removed = len(changes.delete)
        else:
            old = ledger.entries(served, list(changed)) if changed else {}
            removed = len(old.keys() - desired.keys())
        page = PagePlan(after, docs[-1].id, changed, changes, cached, to_embed, texts, token_counts)
        page.removed = removed
        page.known = known
        return page

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
                f"({result.embedded} chunks, ~${result.estimated_cost_usd:.4f}), over "
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
            versions=collect_versions(self.settings, self.fingerprint).as_dict(),
            index_config={
                "embedder": self.embedder.fingerprint_payload(),
                "chunker": self.config.as_dict(),
            },
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
        """Write the plan: chunks of documents gone from the model first, then page by page its
        deletes, metadata updates, and embedding window by window with upserts.

        Each window's vectors go to the embedding cache as soon as they exist; each batch's
        ledger rows go ``pending`` before it is sent and ``written`` once the store acknowledged
        it, so a run killed anywhere is resumed by the next one. A page's changed documents
        lose their recorded hash before anything of theirs is written and get the new one only
        once all their chunks are written, so a killed run never leaves a document skipped.

        Chunks whose text the provider rejects (:meth:`Embedder.embed_partial`) are neither
        written nor acknowledged: they go to the ledger's dead letters (with any vector of an
        earlier text of theirs removed), their documents get no hash, and the next run tries
        them again.
        """
        target, size = self.target, self.settings.index_batch_size
        ledger, store, embedder, spec = self.ledger, self.store, self.embedder, self.spec
        before = embedder.usage.snapshot()
        result = self.result
        if plan.orphans or plan.pages or plan.adopted:
            store.ensure_namespace(target, embedder.dimension)
        ledger.register(self.logical, target, self.fingerprint)
        writing = self.progress.phase(
            "writing", result.deleted + result.metadata_updated + result.upserted
        )
        embedding = self.progress.phase("embedding", result.embedded)
        rel = relation(spec)
        if plan.orphans:
            if result.run_id is not None:
                # Recorded before their chunks go: a run killed meanwhile has them, and the
                # next one (which finds the rest) records them again.
                ledger.record_absent_documents(result.run_id, target, rel, spec.id_column)
            for ids in slices(ledger.orphan_chunks(target, rel, spec.id_column), size):
                store.delete(target, ids)
                ledger.remove(target, ids)
                writing.advance(len(ids))
        ledger.forget_absent_documents(target, rel, spec.id_column)

        pages = plan.pages
        by_batch = False
        batched: set[str] = set()
        batch_rejections: dict[str, Rejection] = {}
        if isinstance(embedder, OpenAIEmbedder) and self.settings.openai_batch_min_tokens:
            # --- Batch API (tasks/index/batch_backfill.py). A qualifying run embeds the texts of
            # every page first, through OpenAI's Batch API: each finished batch's vectors go to
            # the embedding cache, where the pages below find them (then written with the same
            # per-batch acknowledgement); texts it rejected become those pages' dead letters.
            # All pages are held for it: a backfill's memory follows its size. ---
            pages = [p if p.held else self._replan(p, plan.adopted) for p in pages]

            def collect(fresh: dict[str, list[float]], bad: dict[str, Rejection]) -> None:
                batched.update(fresh)
                batch_rejections.update(bad)

            by_batch = backfill_through_batch_api(
                embedder, ledger.conn, self.cache, self.settings,
                [h for p in pages for h in p.to_embed], [t for p in pages for t in p.texts],
                [n for p in pages for n in p.token_counts], collect, namespace=self.logical,
            )  # fmt: skip
        rejected_ids: list[str] = []
        remote = Usage()
        # Shards re-plan their documents from the pages' bounds; a Batch API backfill (vectors
        # and rejections held here) and records adopted from the store (a lost ledger: a rare
        # recovery run) are written in this process.
        if self.write_pages is not None and not by_batch and not plan.adopted:
            written = self.write_pages(self, pages, writing, embedding)
            rejected_ids, remote = list(written.rejected_ids), written.usage
        else:
            for planned in pages:
                page = planned if planned.held else self._replan(planned, plan.adopted)
                rejected_ids += self._apply_page(
                    page, writing, embedding, batched, batch_rejections
                )
        if plan.adopted:
            leftover = sorted(plan.adopted.keys() - ledger.known(target, list(plan.adopted)))
            for ids in slices(leftover, size):
                store.delete(target, ids)
                writing.advance(len(ids))
            result.deleted += len(leftover)
        embedding.finish()
        recovered = ledger.clear_dead_letters(target, keep=rejected_ids)
        if recovered:
            logger.info("%d dead letters of %s are gone (embedded or removed)", recovered, target)
        self.result.dead_letters = len(rejected_ids)
        if rejected_ids:
            logger.warning(
                "%d chunks of %s were rejected by the embedding provider and not indexed; "
                "see %s.dead_letters",
                len(rejected_ids),
                self.logical,
                ledger.schema,
            )
        writing.finish()
        used = embedder.usage.minus(before).plus(remote)
        self.result.requests = used.requests
        self.result.input_tokens = used.input_tokens
        self.result.estimated_cost_usd = used.cost_usd(
            self.price, self.settings.openai_batch_price_factor
        )

    def apply_documents(
        self, docs: Sequence[Document], after: str | None, writing: Phase, embedding: Phase
    ) -> list[str]:
        """Plan and write ``docs`` (one keyset page's documents, or a shard's share of them,
        ``after``: the page's lower bound) as :meth:`apply` writes a page; returns the ids of
        the chunks rejected. For runs whose plan another process made (:mod:`tasks.index.
        sharding`): what the page changes is added to :attr:`result`, not what was planned."""
        page = self._plan_page(docs, after, {}, count=False)
        if not page.changed:
            return []
        return self._apply_page(page, writing, embedding)

    def _replan(self, bounds: PagePlan, adopted: Mapping[str, LedgerEntry]) -> PagePlan:
        """Plan a page again that the plan did not keep in memory (its counts are in
        :attr:`result` already)."""
        docs = list(
            fetch_documents(self.warehouse, self.spec, after=bounds.after, through=bounds.through)
        )
        if not docs:
            return PagePlan(bounds.after, bounds.through)
        return self._plan_page(docs, bounds.after, adopted, count=False)

    def _apply_page(
        self,
        page: PagePlan,
        writing: Phase,
        embedding: Phase,
        batched: set[str] | None = None,
        batch_rejections: Mapping[str, Rejection] | None = None,
    ) -> list[str]:
        """Write one page (see :meth:`apply`); returns the ids of the chunks rejected.

        ``batched``: content hashes this run embedded through the Batch API (in the cache now,
        yet embedded, not cache hits); ``batch_rejections``: texts the Batch API rejected.
        """
        batched = batched or set()
        batch_rejections = batch_rejections or {}
        changes, target, size = page.changes, self.target, self.settings.index_batch_size
        ledger, store, embedder = self.ledger, self.store, self.embedder
        ledger.forget_documents(target, list(page.changed))
        for ids in slices(changes.delete, size):
            store.delete(target, ids)
            ledger.remove(target, ids)
            writing.advance(len(ids))
        stamp = Stamp(self.fingerprint, self.result.run_id)
        for chunks in slices(changes.update_metadata, size):
            store.update_metadata(target, [(c.id, stamp.metadata(c)) for c in chunks])
            ledger.update_metadata(target, chunks)
            writing.advance(len(chunks))

        vectors = dict(page.cached)
        waiting = list(changes.upsert)
        # Texts another page embedded earlier in this run (duplicates across pages) are in the
        # cache now: take them from there instead of paying for them twice.
        again = self.cache.get(ledger.conn, embedder.fingerprint, page.to_embed)
        if again:
            page.drop_to_embed(again)
            vectors.update(again)
            reused = sum(1 for h in again if h not in batched)
            self.result.embedded -= reused
            self.result.cache_hits += reused
            embedding.advance(len(again))

        def flush() -> None:
            nonlocal waiting
            ready = [c for c in waiting if c.content_hash in vectors]
            waiting = [c for c in waiting if c.content_hash not in vectors]
            for batch in slices(ready, size):
                # pending first: if we die after the store wrote but before "written", the next
                # run still knows these ids may exist (and re-upserts or deletes them).
                ledger.mark_pending(target, self.logical, self.fingerprint, batch)
                records = [chunk_record(c, vectors[c.content_hash], stamp) for c in batch]
                store.upsert(target, records)
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
            rejected.extend(dead)
            writing.advance(len(dead))

        rejected: list[Chunk] = []
        rejected_hashes = 0
        flush()  # cache hits cost nothing: write them first
        # Texts this run's Batch API backfill rejected (see apply): dead letters, not sent again.
        refused = {h: batch_rejections[h] for h in page.to_embed if h in batch_rejections}
        if refused:
            reject(refused)
            rejected_hashes += len(refused)
            embedding.advance(len(refused))
            page.drop_to_embed(refused)
        for start, end in embedder.windows(page.token_counts):
            # The plan counted these tokens already: embed does not count them again.
            window, rejections = embedder.embed_partial(
                page.texts[start:end], token_counts=page.token_counts[start:end]
            )
            hashes = page.to_embed[start:end]
            fresh = {hashes[i]: vector for i, vector in window.items()}
            with ledger.conn.transaction():
                self.cache.put(ledger.conn, embedder.fingerprint, fresh)
            vectors.update(fresh)
            if rejections:
                reject({hashes[i]: r for i, r in rejections.items()})
                rejected_hashes += len(rejections)
            embedding.advance(end - start)
            flush()
            # flush() wrote every chunk that had a vector: memory stays within one window.
            vectors = {}
        if waiting:
            raise RuntimeError(f"{len(waiting)} chunks got no vector")  # a bug, not a data problem
        self.result.embedded -= rejected_hashes
        self.result.upserted -= len(rejected)
        dead_docs = {c.document_id for c in rejected}
        rejected_ids = [c.id for c in rejected]
        # The page's document hashes and its changes (run_documents) in one transaction: the
        # changes of a page are recorded exactly when its documents count as written.
        with ledger.conn.transaction():
            ledger.record_documents(
                target, {d: v for d, v in page.changed.items() if d not in dead_docs}
            )
            if self.result.run_id is not None:
                ledger.record_changes(self.result.run_id, document_changes(page, rejected_ids))
        return rejected_ids

    def validate_and_switch(self, plan: RunPlan) -> None:
        """Check ledger == store == desired; switch a rebuilt namespace over; drop old ones.

        Raises:
            ValidationFailed: they disagree (nothing is switched or dropped).
        """
        ledger, store, target = self.ledger, self.store, self.target
        counts = ledger.counts(target)
        in_store = store.count(target)
        self.result.vectors_in_store = in_store
        # Dead letters are visible (result, report, validation) but do not fail the run. After
        # apply, every dead letter left is a desired chunk this run saw rejected.
        dead = len(ledger.dead_letters(target))
        want = plan.chunks - dead
        problems = []
        if counts.get(PENDING, 0):
            problems.append(f"{counts[PENDING]} ledger rows still pending")
        if counts.get(WRITTEN, 0) != want:
            written = counts.get(WRITTEN, 0)
            problems.append(f"ledger has {written} written chunks, want {want}")
        if in_store != want:
            problems.append(f"store has {in_store} vectors, want {want}")
        probe = ledger.written_sample(target) if want and not problems else None
        if probe is not None:
            vector = self.cache.get(ledger.conn, self.embedder.fingerprint, [probe])
            # Without a cached vector (cache purged) the probe is skipped rather than paid for.
            if vector and not store.query(target, vector[probe], 1):
                problems.append("a probe query returned nothing")
        if problems:
            raise ValidationFailed(
                f"Namespace {target} (for {self.logical}) is not consistent after indexing: "
                + "; ".join(problems)
                + ". Re-run indexing; if it persists, delete the namespace's ledger rows to "
                "rebuild."
            )
        if self.result.rebuilt and self.serving is not None:  # a first build has no one to keep
            check_switch_gate(
                self.settings, store, self.embedder, self.logical, target, self.serving
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
            if settings.index_shards > 1:
                # Imported here: tasks.index.sharding imports this module (its shards are runs).
                from tasks.index.sharding import DaskShards

                run.write_pages = DaskShards(settings)
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


#: Metadata keys every stored vector carries besides its chunk's own: the index fingerprint and
#: the id of the run (``index_state.runs``) that wrote it. They are left out of the chunk's
#: metadata hash (a new run id would otherwise rewrite every vector on every run) and out of the
#: index doctor's comparison (:func:`tasks.index.doctor.comparable`).
FINGERPRINT_KEY = "index_fingerprint"
RUN_ID_KEY = "index_run_id"
STAMP_KEYS = (FINGERPRINT_KEY, RUN_ID_KEY)


@dataclass(frozen=True)
class Stamp:
    """Who wrote a vector: the index fingerprint and the run (``None``: not known)."""

    fingerprint: str
    run_id: int | None

    def metadata(self, chunk: Chunk) -> dict[str, Any]:
        """``chunk``'s metadata as stored: its own keys plus :data:`STAMP_KEYS` (a chunk key of
        the same name is replaced)."""
        stamp: dict[str, Any] = {FINGERPRINT_KEY: self.fingerprint}
        if self.run_id is not None:
            stamp[RUN_ID_KEY] = self.run_id
        return {**chunk.metadata, **stamp}


def chunk_record(chunk: Chunk, values: list[float], stamp: Stamp) -> VectorRecord:
    """The store record of ``chunk`` with its vector, stamped by ``stamp``."""
    return VectorRecord(
        id=chunk.id,
        document_id=chunk.document_id,
        values=values,
        text=chunk.text,
        content_hash=chunk.content_hash,
        metadata=stamp.metadata(chunk),
    )


def slices(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
