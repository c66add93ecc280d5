"""Semantic search: embed the query, ask the vector store, shape the results."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from tasks.documents import load_specs
from tasks.embedders import get_embedder
from tasks.errors import ConfigError
from tasks.settings import Settings, get_settings
from tasks.stores import get_store
from tasks.stores.base import SearchHit, VectorStore

SNIPPET_CHARS = 240


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


def default_namespace(settings: Settings) -> str:
    """The namespace to search when none is given: the only one declared in the dbt project."""
    namespaces = [s.namespace for s in load_specs(settings.dbt_project_dir)]
    if len(namespaces) != 1:
        raise ConfigError(
            f"Pass a namespace: the dbt project declares {namespaces or 'no'} embedding namespaces."
        )
    return namespaces[0]


def search(
    query: str,
    top_k: int | None = None,
    filter: dict[str, Any] | None = None,
    namespace: str | None = None,
    settings: Settings | None = None,
    store: VectorStore | None = None,
) -> list[SearchResult]:
    """The ``top_k`` chunks most similar to ``query``, best first."""
    settings = settings or get_settings()
    if not query.strip():
        raise ValueError("The query is empty.")
    namespace = namespace or default_namespace(settings)
    vector = get_embedder(settings).embed_query(query)
    own_store = store is None
    store = store or get_store(settings)
    try:
        hits = store.query(namespace, vector, top_k or settings.search_top_k, filter)
    finally:
        if own_store:
            store.close()
    return [to_result(h, query) for h in hits]


def to_result(hit: SearchHit, query: str) -> SearchResult:
    """A store hit as a result with a snippet."""
    metadata = dict(hit.metadata)
    return SearchResult(
        chunk_id=hit.id,
        document_id=hit.document_id,
        score=round(hit.score, 4),
        title=metadata.pop("title", None),
        url=metadata.pop("url", None),
        snippet=make_snippet(hit.text, query),
        metadata=metadata,
    )


def make_snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The passage of ``text`` around the first query word it contains (else its start)."""
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
