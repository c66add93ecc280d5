"""Request and response models of the search service (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.search.grouping import ScoreRule

#: Hard ceiling on the query field; the configured limit (SEARCH_MAX_QUERY_CHARS) is checked too.
QUERY_MAX_CHARS = 100_000

FilterValue = str | int | float | bool
FilterCondition = FilterValue | dict[str, FilterValue | list[FilterValue]]


class SearchRequest(BaseModel):
    """A search: text in, ranked documents (or chunks) out."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query": "a light tent for two people backpacking in the rain",
                    "top_k": 5,
                    "filter": {"category": "outdoor", "price": {"$lt": 300}},
                    "mode": "hybrid",
                }
            ]
        },
    )

    query: str = Field(
        min_length=1,
        max_length=QUERY_MAX_CHARS,
        description="What to look for, in your own words (limits: SEARCH_MAX_QUERY_CHARS "
        "characters, SEARCH_MAX_QUERY_TOKENS model tokens).",
    )
    top_k: int = Field(default=10, ge=1, le=100, description="Number of results (1..100).")
    offset: int = Field(
        default=0,
        ge=0,
        le=199,
        description="Results to skip, for paging through one ranking; offset + top_k <= 200.",
    )
    filter: dict[str, FilterCondition] | None = Field(
        default=None,
        description='Metadata filter, AND of all keys: `{"category": "kitchen"}`, '
        '`{"brand": {"$in": ["A", "B"]}}`, `{"price": {"$gte": 20, "$lt": 100}}`, '
        '`{"updated_at": {"$gte": "2026-01-01"}}`. Keys: the declared metadata columns of the '
        "namespace; operators: $eq, $in, $gt, $gte, $lt, $lte.",
    )
    namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Namespace to search (a dbt model's `meta.embedding.namespace`); default: "
        "the only one declared.",
    )
    mode: Literal["vector", "hybrid"] | None = Field(
        default=None,
        description="`vector` (embeddings) or `hybrid` (embeddings + full-text, fused by "
        "reciprocal rank). Default: SEARCH_MODE.",
    )
    group_by: Literal["document", "chunk"] = Field(
        default="document",
        description="`document`: distinct documents, each scored from its best chunks and "
        "returned with its best passages (`top_k` and `offset` count documents). `chunk`: "
        "the ranked chunks themselves (the response shape before grouping existed).",
    )
    group_rule: ScoreRule | None = Field(
        default=None,
        description="`group_by: document`: how a document is scored from its chunks. `max`: "
        "its best chunk's score; `max_bonus`: the best plus 0.1 times the next two; `sum_top`: "
        "the sum of the best three (the last two favour long documents with many matching "
        "chunks). Default: SEARCH_GROUP_RULE. Ignored for chunks.",
    )


class SearchResultOut(BaseModel):
    """One ranked chunk."""

    chunk_id: str
    document_id: str
    score: float = Field(
        description="vector: cosine similarity; hybrid: reciprocal-rank-fusion score. Higher is "
        "better; compare scores only within one response."
    )
    title: str | None
    url: str | None
    snippet: str = Field(
        description="The best matching passage, HTML-escaped, query terms wrapped in <mark>."
    )
    metadata: dict[str, Any]


class PassageOut(BaseModel):
    """One of a document's best chunks."""

    chunk_id: str
    position: int = Field(description="The chunk's position in its document (0 = first).")
    score: float = Field(
        description="The chunk's own score (vector: cosine; hybrid: its fused chunk rank)."
    )
    snippet: str = Field(description="The passage, HTML-escaped, query terms wrapped in <mark>.")


class DocumentResultOut(BaseModel):
    """One ranked document (``group_by: document``)."""

    document_id: str
    score: float = Field(
        description="vector: the document's score from its chunks' cosine similarities under "
        "`group_rule` (`max`: the best one's); hybrid: reciprocal-rank fusion of the document's "
        "rank on each side (each side ranked by `group_rule`). Higher is better; compare scores "
        "only within one response."
    )
    title: str | None
    url: str | None
    metadata: dict[str, Any]
    passages: list[PassageOut] = Field(description="The document's best chunks, best first.")


class SearchResponseOut(BaseModel):
    """Ranked results and what the search took."""

    results: list[DocumentResultOut] | list[SearchResultOut] = Field(
        description="Documents (`group_by: document`) or chunks (`group_by: chunk`), best first."
    )
    group_by: Literal["document", "chunk"]
    group_rule: ScoreRule | None = Field(
        default=None, description="The rule that scored the documents (null for chunks)."
    )
    took_ms: float = Field(description="Time spent in the service for this search.")
    model: str = Field(description="Embedding model that embedded the query.")
    mode: Literal["vector", "hybrid"]
    namespace: str


class ChunkOut(BaseModel):
    """One chunk of a document."""

    chunk_id: str
    position: int
    text: str


class DocumentOut(BaseModel):
    """A document as indexed, with its chunks in order."""

    document_id: str
    namespace: str
    title: str | None
    url: str | None
    metadata: dict[str, Any]
    chunks: list[ChunkOut]


class HealthOut(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """Readiness and the result of each check."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="Check name -> `ok` or why it failed.")


class ErrorOut(BaseModel):
    """Every error response."""

    detail: str | list[dict[str, Any]]
    request_id: str | None = None
