"""Search: embed the query, ask the vector store (and Postgres full-text search in hybrid mode),
fuse the rankings, shape the results with highlighted snippets.

Results are chunks (``group_by="chunk"``, the ranking as retrieved) or documents
(``group_by="document"``, the default of the HTTP API and the CLI): enough chunk candidates are
fetched to fill ``top_k`` distinct documents, each document is scored from its chunks by a rule
(:mod:`tasks.search.grouping`; ``group_rule`` per call, ``SEARCH_GROUP_RULE`` by default) and
comes with its best passages.

Two entry points share one path:

- :func:`search` for one-off calls (CLI, notebooks, the pipeline's probe): it opens and closes
  its own connections.
- :class:`Searcher` holds the connections for many calls (the HTTP service pools them, the
  retrieval evaluation reuses one).
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast, get_args, overload

from tasks.embedders import get_embedder
from tasks.embedders.base import Embedder
from tasks.errors import ConfigError, PipelineError, VectorStoreError
from tasks.index.documents import EmbeddingSpec, load_specs
from tasks.index.namespaces import serving_namespace
from tasks.search.fulltext import FullTextSearch, chunk_text_table
from tasks.search.grouping import SCORE_RULES, DocumentGroup, ScoreRule, fuse_groups, group_hits
from tasks.search.query_batching import QueryBatcher
from tasks.settings import Settings, get_settings
from tasks.stores import get_store
from tasks.stores.base import SearchHit, VectorStore, check_namespace
from tasks.stores.filters import Condition, parse_filter
from tasks.transform.manifest import manifest_path, read_manifest
from tasks.warehouse import Warehouse, get_warehouse

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 240
MAX_TOP_K = 100
#: Deepest rank reachable with ``offset`` (HNSW returns about ``hnsw.ef_search`` rows per scan;
#: deeper pages need iterative scans and get slower).
MAX_DEPTH = 200
#: How long a searcher trusts its lookup of the serving physical namespace.
SERVING_TTL_S = 2.0

Mode = Literal["vector", "hybrid"]
MODES: tuple[str, ...] = get_args(Mode)
GroupBy = Literal["chunk", "document"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
#: Document mode, first fetch: chunk candidates per document asked for (``offset + top_k``).
#: On the real site of issue 19 ten chunks covered 6.3 pages, so 3 per page fills most pages
#: in one fetch; when it does not, one deeper fetch of ``DEEPER_FACTOR`` times as many follows.
CANDIDATES_PER_DOCUMENT = 3
DEEPER_FACTOR = 4
#: Document mode: the most chunk candidates one fetch asks for (HNSW's ef_search tops out at
#: 1,000; deeper than that the iterative scan works alone and gets slow).
MAX_CANDIDATES = 1000
#: Document mode: best passages returned per document.
PASSAGES_PER_DOCUMENT = 3
#: Where hybrid mode fuses in document mode: "chunks" (fuse the chunk rankings, then group) or
#: "documents" (group each mode's ranking, then fuse the document rankings). Documents measured
#: better with the ``max_bonus`` rule on the demo set split into small chunks (MRR 0.938 against
#: 0.902): each side's bonus is computed on its own score scale, not on RRF scores whose gaps
#: are tiny (BENCHMARKS.md, "Grouping by document").
HybridFusion = Literal["chunks", "documents"]
HYBRID_FUSION: HybridFusion = "documents"

#: Tokenizers of Hugging Face models fail when used by two threads at once; models are not
#: faster that way on a CPU either. One lock per process around query embedding.
_EMBED_LOCK = threading.Lock()


class SearchRequestError(PipelineError, ValueError):
    """The search cannot be run as asked; the message says what to change (HTTP 422)."""


class InvalidFilter(SearchRequestError):
    """The filter names an undeclared key, an unknown operator or a value of the wrong shape."""


class UnknownNamespace(SearchRequestError):
    """The namespace is not declared by any dbt model."""


class InvalidQuery(SearchRequestError):
    """The query is empty or too long."""


@dataclass(frozen=True)
class SearchResult:
    """One ranked result."""

    chunk_id: str
    document_id: str
    score: float
    title: str | None
    url: str | None
    snippet: str
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class Passage:
    """One of a document's best chunks in a grouped result."""

    chunk_id: str
    #: The chunk's position in its document (0 = first).
    position: int
    score: float
    snippet: str


@dataclass(frozen=True)
class DocumentResult:
    """One ranked document: scored from its chunks, with its best passages (best first)."""

    document_id: str
    score: float
    title: str | None
    url: str | None
    metadata: dict[str, Any]
    passages: list[Passage]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)


@dataclass
class SearchResponse:
    """Results of one search and what it cost.

    ``group_by="chunk"``: ``results`` holds the chunks and ``documents`` is empty;
    ``group_by="document"``: ``documents`` holds the documents and ``results`` is empty, and
    ``group_rule`` says how they were scored (``None`` for chunks).
    """

    results: list[SearchResult]
    mode: str
    namespace: str
    model: str
    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    total_ms: float = 0.0
    candidates: dict[str, int] = field(default_factory=dict)
    group_by: str = "chunk"
    documents: list[DocumentResult] = field(default_factory=list)
    group_rule: ScoreRule | None = None


@dataclass(frozen=True)
class DocumentView:
    """A document as the index holds it: its fields and its chunks in order."""

    document_id: str
    namespace: str
    title: str | None
    url: str | None
    metadata: dict[str, Any]
    chunks: list[dict[str, Any]]


# --- namespaces and filters -------------------------------------------------------------------


_specs_lock = threading.Lock()
#: manifest path -> (mtime, specs): the last declarations read from each manifest.
_specs_cache: dict[str, tuple[int, list[EmbeddingSpec]]] = {}
#: dbt model id -> {column: declared data_type} (from the same manifest reads).
_column_types: dict[str, dict[str, str]] = {}

_NUMERIC_TYPES = re.compile(r"^(numeric|decimal|bigint|integer|int\d?|smallint|double|real|float)")
_TEXT_TYPES = re.compile(r"^(text|character|varchar|char|string)")
_TIME_TYPES = re.compile(r"^(timestamp|date)")


def namespace_specs(settings: Settings) -> list[EmbeddingSpec]:
    """The embedding declarations of the dbt project, re-read only when the manifest changes.

    While a dbt run rewrites or removes the manifest, a running service keeps the declarations
    it read last rather than failing every search.

    Raises:
        ConfigError: there is no manifest and none was read before.
    """
    manifest = manifest_path(settings.dbt_target_dir)
    key = str(manifest)
    try:
        mtime = manifest.stat().st_mtime_ns
    except FileNotFoundError:
        mtime = -1
    with _specs_lock:
        cached = _specs_cache.get(key)
    if cached is not None and (cached[0] == mtime or mtime == -1):
        if mtime == -1:
            logger.warning("dbt manifest %s is gone; using the declarations read last", manifest)
        return list(cached[1])
    read = read_manifest(manifest)  # once, for the declarations and their column types
    specs = load_specs(read)
    types = {s.model: read.nodes[s.model].column_types for s in specs}
    with _specs_lock:
        _specs_cache[key] = (mtime, specs)
        _column_types.update(types)
    return list(specs)


def default_namespace(settings: Settings) -> str:
    """The namespace to search when none is given: the only one declared in the dbt project."""
    namespaces = [s.namespace for s in namespace_specs(settings)]
    if len(namespaces) != 1:
        raise ConfigError(
            f"Pass a namespace: the dbt project declares {namespaces or 'no'} embedding namespaces."
        )
    return namespaces[0]


def namespace_spec(settings: Settings, namespace: str | None) -> EmbeddingSpec:
    """The declaration of ``namespace`` (or of the only namespace when ``None``).

    Raises:
        UnknownNamespace: no dbt model declares it.
    """
    specs = {s.namespace: s for s in namespace_specs(settings)}
    name = namespace or default_namespace(settings)
    if name not in specs:
        raise UnknownNamespace(
            f"Unknown namespace {name!r}: the dbt project declares {sorted(specs)}."
        )
    return specs[name]


def filter_keys(spec: EmbeddingSpec) -> set[str]:
    """Metadata keys a search may filter on: the declared metadata columns (and updated_at)."""
    keys = set(spec.metadata_columns)
    if spec.updated_at_column:
        keys.add("updated_at")
    return keys


def check_filter(spec: EmbeddingSpec, raw: dict[str, Any] | None) -> list[Condition]:
    """Validate ``raw`` against the namespace's declared metadata columns.

    Raises:
        InvalidFilter: unknown key or operator, or a value of the wrong shape.
    """
    try:
        conditions = parse_filter(raw, allowed_keys=filter_keys(spec))
    except VectorStoreError as exc:
        raise InvalidFilter(str(exc)) from None
    types = _column_types.get(spec.model, {})
    for c in conditions:
        column = spec.updated_at_column if c.key == "updated_at" else c.key
        _check_type(c, types.get(column or c.key, ""))
    return conditions


def _check_type(condition: Condition, data_type: str) -> None:
    """Refuse values that can never match the column's declared type (instead of no results).

    Raises:
        InvalidFilter: e.g. a string for a numeric column, a number for a text or date column.
    """
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    key, op = condition.key, condition.op
    if _NUMERIC_TYPES.match(data_type):
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise InvalidFilter(f"{key!r} is numeric ({data_type}): `{op}` needs numbers.")
    elif _TIME_TYPES.match(data_type):
        for v in values:
            if not isinstance(v, str) or not _ISO_DATE.match(v):
                raise InvalidFilter(
                    f'{key!r} is a {data_type}: `{op}` needs ISO dates like "2026-01-31".'
                )
    elif _TEXT_TYPES.match(data_type) and any(not isinstance(v, str) for v in values):
        raise InvalidFilter(f"{key!r} is text: `{op}` needs strings.")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$")


# --- fusion and snippets ----------------------------------------------------------------------


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[SearchHit]], k: int = 60, top_k: int | None = None
) -> list[SearchHit]:
    """Fuse rankings by reciprocal rank: ``score(d) = sum over rankings of 1 / (k + rank(d))``.

    Ranks start at 1. Ties keep the order of first appearance (earlier rankings first). The hit
    object kept for each id is the first one seen; its score is replaced by the fused score.
    """
    scores: dict[str, float] = {}
    first: dict[str, SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(first, key=lambda i: -scores[i])  # stable: ties keep first appearance
    fused = [replace(first[i], score=scores[i]) for i in order]
    return fused[:top_k] if top_k is not None else fused


def make_snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The passage of ``text`` around the first query word it contains (else its start).

    Plain text, no highlighting: the fallback when no Postgres is at hand for ``ts_headline``.
    """
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    words = [w for w in re.findall(r"\w{4,}", query.lower())]
    lower = flat.lower()
    positions = [p for w in words if (p := lower.find(w)) >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    if start:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    end = start + width
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def to_result(hit: SearchHit, snippet: str, digits: int = 4) -> SearchResult:
    """A store hit as a result."""
    metadata = dict(hit.metadata)
    return SearchResult(
        chunk_id=hit.id,
        document_id=hit.document_id,
        score=round(hit.score, digits),
        title=metadata.pop("title", None),
        url=metadata.pop("url", None),
        snippet=snippet,
        metadata=metadata,
    )


def count_query_tokens(embedder: Embedder, text: str) -> int:
    """Tokens ``text`` takes in the embedding model (:meth:`Embedder.count_tokens`)."""
    return embedder.count_tokens([text])[0]


# --- the search path --------------------------------------------------------------------------


def check_group_rule(rule: str) -> ScoreRule:
    """``rule`` as a document score rule of :mod:`tasks.search.grouping`.

    Raises:
        SearchRequestError: not one of ``SCORE_RULES``.
    """
    if rule not in SCORE_RULES:
        raise SearchRequestError(
            f"Unknown group_rule {rule!r}: use one of {list(SCORE_RULES)} "
            "(or leave it out for SEARCH_GROUP_RULE)."
        )
    return cast(ScoreRule, rule)  # checked against the Literal's values above


def check_query_tokens(embedder: Embedder, query: str, limit: int) -> int:
    """The length of ``query`` in model tokens; :class:`InvalidQuery` if over ``limit``
    (``SEARCH_MAX_QUERY_TOKENS``). Pass the count on to ``embed`` so it is not counted again."""
    tokens = count_query_tokens(embedder, query)
    if tokens > limit:
        raise InvalidQuery(
            f"The query is {tokens} tokens long; the limit is {limit} "
            "(SEARCH_MAX_QUERY_TOKENS). Shorten it."
        )
    return tokens


class Searcher:
    """Runs searches with one store connection and one full-text connection (not thread-safe)."""

    def __init__(
        self,
        settings: Settings | None = None,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        statement_timeout_ms: int = 0,
        physical_namespaces: dict[str, str] | None = None,
        query_batcher: QueryBatcher | None = None,
        warehouse: Warehouse | None = None,
    ) -> None:
        """``physical_namespaces`` pins logical namespaces to physical ones, e.g. to evaluate a
        rebuilt namespace before it is switched in (``{"products": "products__3f2a..."}``).
        ``query_batcher`` (the search service's) embeds queries together with other requests'
        and caches them; without it each query is embedded on its own. ``warehouse`` is where
        the full-text side connects (default: the settings'); the service passes one bound to a
        pooled connection."""
        self.settings = settings or get_settings()
        self.query_batcher = query_batcher
        self._pinned = dict(physical_namespaces or {})
        self.embedder = embedder or get_embedder(self.settings)
        self._own_store = store is None
        self.store = store or get_store(self.settings)
        self._timeout_ms = statement_timeout_ms
        if statement_timeout_ms and hasattr(self.store, "conn"):
            # pgvector: bound every query of the store's connection too.
            self.store.conn.execute(
                "select set_config('statement_timeout', %s, false)", (str(statement_timeout_ms),)
            )
        self.fulltext = FullTextSearch(
            warehouse or get_warehouse(self.settings),
            text_config=self.settings.search_fulltext_config,
            statement_timeout_ms=statement_timeout_ms,
        )
        self._serving: dict[str, tuple[float, str]] = {}

    def physical_namespace(self, logical: str) -> str:
        """The physical namespace serving ``logical``, looked up at most every few seconds.

        ``serving_namespace`` opens a connection per call; a switch-over (blue/green rebuild)
        is picked up within ``SERVING_TTL_S``.
        """
        if logical in self._pinned:
            return check_namespace(self._pinned[logical])
        now = time.monotonic()
        cached = self._serving.get(logical)
        if cached is not None and now - cached[0] < SERVING_TTL_S:
            return cached[1]
        physical = serving_namespace(self.settings, logical)
        self._serving[logical] = (now, physical)
        return physical

    def close(self) -> None:
        """Release connections (the store only if this searcher opened it)."""
        self.fulltext.close()
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed_query(self, query: str) -> list[float]:
        """The query's vector, after checking its length in model tokens.

        Raises:
            InvalidQuery: longer than ``SEARCH_MAX_QUERY_TOKENS``.
        """
        if self.query_batcher is not None:
            return self.query_batcher.embed(query, timeout_s=self.settings.search_timeout_s)
        with _EMBED_LOCK:
            tokens = check_query_tokens(self.embedder, query, self.settings.search_max_query_tokens)
            return self.embedder.embed_query(query, token_count=tokens)

    def search(
        self,
        query: str,
        top_k: int | None = None,
        filter: dict[str, Any] | None = None,
        namespace: str | None = None,
        mode: str | None = None,
        offset: int = 0,
        group_by: str = "chunk",
        group_rule: str | None = None,
    ) -> SearchResponse:
        """The ``top_k`` best chunks (or documents) for ``query`` after skipping ``offset``.

        ``group_by="chunk"``: chunks as retrieved, in ``results``. ``group_by="document"``:
        distinct documents scored from their chunks by ``group_rule`` (default:
        ``SEARCH_GROUP_RULE``), each with its best passages, in ``documents``; ``offset`` and
        ``top_k`` then count documents. ``offset`` pages through one ranking: ``offset + top_k``
        may not exceed ``MAX_DEPTH``. Chunk results ignore ``group_rule`` (it is still checked).

        Raises:
            SearchRequestError: bad query, filter, namespace, mode, group_by, group_rule or
                top_k (nothing was run).
        """
        started = time.perf_counter()
        settings = self.settings
        if not query.strip():
            raise InvalidQuery("The query is empty.")
        if len(query) > settings.search_max_query_chars:
            raise InvalidQuery(
                f"The query is {len(query)} characters long; the limit is "
                f"{settings.search_max_query_chars} (SEARCH_MAX_QUERY_CHARS)."
            )
        mode = mode or settings.search_mode
        if mode not in MODES:
            raise SearchRequestError(f"Unknown mode {mode!r}: use one of {list(MODES)}.")
        if group_by not in GROUP_BYS:
            raise SearchRequestError(
                f"Unknown group_by {group_by!r}: use one of {list(GROUP_BYS)}."
            )
        rule = check_group_rule(settings.search_group_rule if group_rule is None else group_rule)
        top_k = settings.search_top_k if top_k is None else top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise SearchRequestError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
        if offset < 0 or offset + top_k > MAX_DEPTH:
            raise SearchRequestError(
                f"offset + top_k must be at most {MAX_DEPTH} (got {offset} + {top_k}); "
                "refine the query or the filter instead of paging deeper."
            )
        depth = offset + top_k
        spec = namespace_spec(settings, namespace)
        conditions = check_filter(spec, filter)
        physical = self.physical_namespace(spec.namespace)

        before_embedding = time.perf_counter()
        vector = self.embed_query(query)
        embedded = time.perf_counter()

        digits = 6 if mode == "hybrid" else 4
        documents: list[DocumentResult] = []
        results: list[SearchResult] = []
        if group_by == "document":
            groups, counts = self._documents(
                physical, query, vector, filter, conditions, mode, depth, rule
            )
            documents = self._document_results(groups[offset:depth], query, digits)
        else:
            candidates = (
                max(depth, settings.search_hybrid_candidates) if mode == "hybrid" else depth
            )
            vector_hits, text_hits = self._retrieve(
                physical, query, vector, filter, conditions, mode, candidates
            )
            counts = {"vector": len(vector_hits)}
            if mode == "hybrid":
                counts["fulltext"] = len(text_hits)
                hits = reciprocal_rank_fusion(
                    [vector_hits, text_hits], k=settings.search_rrf_k, top_k=depth
                )[offset:]
            else:
                hits = vector_hits[offset:depth]
            snippets = self._snippets([h.text for h in hits], query)
            results = [to_result(h, s, digits) for h, s in zip(hits, snippets, strict=True)]
        done = time.perf_counter()
        return SearchResponse(
            results=results,
            mode=mode,
            namespace=spec.namespace,
            model=self.embedder.model,
            embed_ms=(embedded - before_embedding) * 1000,
            retrieve_ms=(done - embedded) * 1000,
            total_ms=(done - started) * 1000,
            candidates=counts,
            group_by=group_by,
            documents=documents,
            group_rule=rule if group_by == "document" else None,
        )

    #: Where hybrid mode fuses (document mode). An attribute so the evaluation and the
    #: benchmark can measure the alternative.
    hybrid_fusion: HybridFusion = HYBRID_FUSION

    def _retrieve(
        self,
        physical: str,
        query: str,
        vector: list[float],
        filter: dict[str, Any] | None,
        conditions: list[Condition],
        mode: str,
        candidates: int,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """The vector side's and (hybrid mode) the keyword side's best ``candidates`` chunks."""
        vector_hits = self.store.query(physical, vector, candidates, filter or None)
        if mode != "hybrid":
            return vector_hits, []
        table = chunk_text_table(self.settings, physical)
        return vector_hits, self.fulltext.search(table, query, candidates, conditions)

    def _documents(
        self,
        physical: str,
        query: str,
        vector: list[float],
        filter: dict[str, Any] | None,
        conditions: list[Condition],
        mode: str,
        want: int,
        rule: ScoreRule,
    ) -> tuple[list[DocumentGroup], dict[str, int]]:
        """At least ``want`` distinct documents when the index holds them, best first, each
        scored by ``rule``.

        The first fetch asks for ``CANDIDATES_PER_DOCUMENT`` chunks per document wanted; when
        that does not fill ``want`` documents (a few long documents took every slot) and the
        store had more, one deeper fetch follows. Bounded by ``MAX_CANDIDATES`` chunks.
        """
        candidates = min(MAX_CANDIDATES, want * CANDIDATES_PER_DOCUMENT)
        if mode == "hybrid":
            candidates = max(candidates, self.settings.search_hybrid_candidates)
        fetches = 0
        while True:
            fetches += 1
            vector_hits, text_hits = self._retrieve(
                physical, query, vector, filter, conditions, mode, candidates
            )
            groups = self._rank_documents(vector_hits, text_hits, mode, rule)
            exhausted = len(vector_hits) < candidates and len(text_hits) < candidates
            if len(groups) >= want or exhausted or candidates >= MAX_CANDIDATES or fetches > 1:
                break
            candidates = min(MAX_CANDIDATES, candidates * DEEPER_FACTOR)
        counts = {"vector": len(vector_hits), "fetches": fetches, "documents": len(groups)}
        if mode == "hybrid":
            counts["fulltext"] = len(text_hits)
        return groups, counts

    def _rank_documents(
        self,
        vector_hits: list[SearchHit],
        text_hits: list[SearchHit],
        mode: str,
        rule: ScoreRule,
    ) -> list[DocumentGroup]:
        """Documents ranked from the retrieved chunks (fused first or after, in hybrid mode)."""
        if mode != "hybrid":
            return group_hits(vector_hits, rule)
        k = self.settings.search_rrf_k
        fused_chunks = reciprocal_rank_fusion([vector_hits, text_hits], k=k)
        if self.hybrid_fusion == "chunks":
            return group_hits(fused_chunks, rule)
        # Documents ranked by fusing each side's document ranking; their passages ordered (and
        # scored) by the fused chunk ranking, one scale for every passage.
        passages: dict[str, list[SearchHit]] = {}
        for hit in fused_chunks:
            passages.setdefault(hit.document_id, []).append(hit)
        documents = fuse_groups([group_hits(vector_hits, rule), group_hits(text_hits, rule)], k=k)
        return [DocumentGroup(d.document_id, d.score, passages[d.document_id]) for d in documents]

    def _snippets(self, texts: list[str], query: str) -> list[str]:
        """Highlighted passages of ``texts`` (``ts_headline``), the text's start when no query
        word occurs in it."""
        return [
            # No query word in the text (a pure vector match): the text's start reads better
            # than the few words ts_headline falls back to.
            s if "<mark>" in s else html.escape(make_snippet(t, query), quote=False)
            for t, s in zip(texts, self.fulltext.headlines(texts, query), strict=True)
        ]

    def _document_results(
        self, groups: list[DocumentGroup], query: str, digits: int
    ) -> list[DocumentResult]:
        """The page of documents with their best passages (one headline call for all)."""
        passages = [g.hits[:PASSAGES_PER_DOCUMENT] for g in groups]
        snippets = iter(self._snippets([h.text for hits in passages for h in hits], query))
        results = []
        for group, hits in zip(groups, passages, strict=True):
            metadata = dict(hits[0].metadata)
            title, url = metadata.pop("title", None), metadata.pop("url", None)
            for key in ("chunk_position", "document_id"):
                metadata.pop(key, None)
            results.append(
                DocumentResult(
                    document_id=group.document_id,
                    score=round(group.score, digits),
                    title=title,
                    url=url,
                    metadata=metadata,
                    passages=[
                        Passage(
                            chunk_id=h.id,
                            position=int(h.metadata.get("chunk_position", 0)),
                            score=round(h.score, digits),
                            snippet=next(snippets),
                        )
                        for h in hits
                    ],
                )
            )
        return results

    def document(self, document_id: str, namespace: str | None = None) -> DocumentView | None:
        """The indexed document ``document_id`` with its chunks, or ``None`` if not indexed."""
        spec = namespace_spec(self.settings, namespace)
        table = chunk_text_table(self.settings, self.physical_namespace(spec.namespace))
        chunks = self.fulltext.document_chunks(table, document_id)
        if not chunks:
            return None
        metadata = dict(chunks[0]["metadata"])
        for key in ("chunk_position", "document_id"):
            metadata.pop(key, None)
        return DocumentView(
            document_id=document_id,
            namespace=spec.namespace,
            title=metadata.pop("title", None),
            url=metadata.pop("url", None),
            metadata=metadata,
            chunks=[
                {
                    "chunk_id": c["id"],
                    "position": int(c["metadata"].get("chunk_position", 0)),
                    "text": c["text"],
                }
                for c in chunks
            ],
        )


@overload
def search(
    query: str,
    top_k: int | None = None,
    filter: dict[str, Any] | None = None,
    namespace: str | None = None,
    settings: Settings | None = None,
    store: VectorStore | None = None,
    mode: str | None = None,
    group_by: Literal["chunk"] = "chunk",
    group_rule: str | None = None,
) -> list[SearchResult]: ...


@overload
def search(
    query: str,
    top_k: int | None = None,
    filter: dict[str, Any] | None = None,
    namespace: str | None = None,
    settings: Settings | None = None,
    store: VectorStore | None = None,
    mode: str | None = None,
    *,
    group_by: Literal["document"],
    group_rule: str | None = None,
) -> list[DocumentResult]: ...


def search(
    query: str,
    top_k: int | None = None,
    filter: dict[str, Any] | None = None,
    namespace: str | None = None,
    settings: Settings | None = None,
    store: VectorStore | None = None,
    mode: str | None = None,
    group_by: str = "chunk",
    group_rule: str | None = None,
) -> list[SearchResult] | list[DocumentResult]:
    """The ``top_k`` chunks (``group_by="chunk"``) or distinct documents with their best
    passages (``group_by="document"``, scored by ``group_rule``, default ``SEARCH_GROUP_RULE``)
    best matching ``query``, best first (``mode``: vector or hybrid).

    Raises:
        SearchRequestError: bad query, filter, namespace, mode, group_by or group_rule.
    """
    with Searcher(settings, store=store) as searcher:
        response = searcher.search(
            query, top_k, filter, namespace, mode, group_by=group_by, group_rule=group_rule
        )
    return response.documents if group_by == "document" else response.results
