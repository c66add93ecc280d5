"""Document-level results: collapse ranked chunks into ranked documents (pure functions).

A long page contributes many chunks; users want the page. :func:`group_hits` turns a ranking of
chunks into a ranking of distinct documents, each scored from its chunks by one rule and
keeping its best chunks as passages (Elasticsearch's ``collapse``, Weaviate's ``groupBy``).

Rules (``group_rule`` per search, ``SEARCH_GROUP_RULE`` by default; docs/search-service.md
"Grouping by document"):

- ``max``: the best chunk's score. A document is as good as its best passage.
- ``max_bonus``: the best score plus ``BONUS`` times the next ``TOP_N - 1`` scores: several
  matching passages break ties between documents whose best passages score alike.
- ``sum_top``: the sum of the best ``TOP_N`` scores. Favours long documents that match
  everywhere, which is how a long tutorial buries the short reference page.

``max`` is the default (:data:`DEFAULT_RULE`), measured on the real-corpus sets (data/eval,
BENCHMARKS.md "The document score rule on the real sets"): on full git-doc (217 pages, 189
queries) it has the best recall@1, MRR and nDCG@10 of the three rules in vector mode (0.455 /
0.595 / 0.671 against 0.392 / 0.557 / 0.644 for ``max_bonus``, 0.370 / 0.520 / 0.613 for
``sum_top``) and in hybrid mode (0.413 / 0.584 / 0.661 against 0.392 / 0.562 / 0.648), and
it recovers chunk results' rank-1 hits (vector recall@1 0.455 either way) while keeping
grouping's depth (recall@10 0.910 against 0.820 for chunks). Its cost: hybrid recall@10 0.899
against ``max_bonus``'s 0.921 (4 of 189 answers drop below rank 10). On a python-library
slice (100 queries, 140 pages) ``max`` ties or beats ``max_bonus`` in every figure. The
bonus rewards pages with many near-matching chunks, and on real documentation those are the
long pages (the user manual, the command list, tutorials) that paraphrase every short page's
summary. ``max_bonus`` had been chosen on the demo set (28 queries, one or two queries'
margin), where documents are short reviews and items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from tasks.stores.base import SearchHit

ScoreRule = Literal["max", "max_bonus", "sum_top"]
SCORE_RULES: tuple[str, ...] = get_args(ScoreRule)
DEFAULT_RULE: ScoreRule = "max"
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
