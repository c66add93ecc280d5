"""Document-level results: collapse ranked chunks into ranked documents (pure functions).

A long page contributes many chunks; users want the page. :func:`group_hits` turns a ranking of
chunks into a ranking of distinct documents, each scored from its chunks by one rule and
keeping its best chunks as passages (Elasticsearch's ``collapse``, Weaviate's ``groupBy``).

Rules (measured on the demo evaluation set, see docs/search-service.md "Grouping"):

- ``max``: the best chunk's score. A document is as good as its best passage.
- ``max_bonus``: the best score plus ``BONUS`` times the next ``TOP_N - 1`` scores: several
  matching passages break ties between documents whose best passages score alike.
- ``sum_top``: the sum of the best ``TOP_N`` scores. Favours long documents that match
  everywhere, which is how a long tutorial buries the short reference page.

``max_bonus`` is the default (:data:`DEFAULT_RULE`). On the demo catalog split into 40-token
chunks (2,112 chunks of 320 documents, 28 labelled queries; BENCHMARKS.md) it had the best MRR
and nDCG@10 in vector mode (0.938 / 0.953 against 0.929 / 0.943 for ``max``) and, with hybrid
fusion of document rankings, in hybrid mode too; ``sum_top`` lost at rank 1 in both (0.768
and 0.732-0.804 recall@1 against 0.875). The margins are one or two queries of 28: re-check on
larger real-corpus sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from tasks.stores.base import SearchHit

ScoreRule = Literal["max", "max_bonus", "sum_top"]
SCORE_RULES: tuple[str, ...] = get_args(ScoreRule)
DEFAULT_RULE: ScoreRule = "max_bonus"
#: ``max_bonus``: weight of the runner-up passages.
BONUS = 0.1
#: ``max_bonus`` / ``sum_top``: how many of a document's best chunks count.
TOP_N = 3


@dataclass(frozen=True)
class DocumentGroup:
    """One document of a grouped ranking: its score and its chunks, best first."""

    document_id: str
    score: float
    hits: list[SearchHit] = field(default_factory=list)


def score_document(scores: Sequence[float], rule: ScoreRule = DEFAULT_RULE) -> float:
    """A document's score from its chunks' scores (best first) under ``rule``."""
    if not scores:
        return 0.0
    if rule == "max":
        return scores[0]
    if rule == "max_bonus":
        return scores[0] + BONUS * sum(scores[1:TOP_N])
    if rule == "sum_top":
        return sum(scores[:TOP_N])
    raise ValueError(f"Unknown document score rule {rule!r}: use one of {list(SCORE_RULES)}.")


def group_hits(hits: Sequence[SearchHit], rule: ScoreRule = DEFAULT_RULE) -> list[DocumentGroup]:
    """Chunks (best first) as distinct documents, best first; ties keep first appearance.

    Every chunk of a document is kept in its group (best first); callers take the passages.
    """
    members: dict[str, list[SearchHit]] = {}
    for hit in hits:
        members.setdefault(hit.document_id, []).append(hit)
    groups = []
    for document_id, chunks in members.items():
        chunks.sort(key=lambda h: -h.score)  # stable: equal scores keep the ranking's order
        groups.append(
            DocumentGroup(document_id, score_document([h.score for h in chunks], rule), chunks)
        )
    groups.sort(key=lambda g: -g.score)  # stable: ties keep first appearance
    return groups


def fuse_groups(rankings: Sequence[Sequence[DocumentGroup]], k: int = 60) -> list[DocumentGroup]:
    """Reciprocal rank fusion of document rankings (one per retrieval mode).

    The fused score of a document is ``sum 1 / (k + rank)`` over the rankings it appears in;
    its chunks are the union of its chunks in every ranking (each chunk once, the first seen),
    ordered by their order of appearance across rankings (the searcher re-orders them by their
    fused chunk rank). The alternative, fusing the chunk rankings first and grouping after,
    measured worse with ``max_bonus`` (BENCHMARKS.md).
    """
    scores: dict[str, float] = {}
    chunks: dict[str, dict[str, SearchHit]] = {}
    for ranking in rankings:
        for rank, group in enumerate(ranking, 1):
            scores[group.document_id] = scores.get(group.document_id, 0.0) + 1.0 / (k + rank)
            seen = chunks.setdefault(group.document_id, {})
            for hit in group.hits:
                seen.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda d: -scores[d])  # stable: ties keep first appearance
    return [DocumentGroup(d, scores[d], list(chunks[d].values())) for d in order]
