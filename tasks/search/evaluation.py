"""Retrieval quality: run a labeled query set through the search path and score the rankings.

The query file is JSON lines, one query per line::

    {"query": "lightweight shelter for two hikers", "relevant_ids": ["item:275"], "filter": null}

(``relevant_document_ids`` / ``relevant`` are accepted as synonyms of ``relevant_ids``.)
Relevance is binary and judged per document: a ranking of chunks is turned into a ranking of
distinct document ids (first occurrence wins) before scoring.

Metrics, averaged over queries: recall@k (share of the relevant documents in the first k), MRR
(1 / rank of the first relevant document, 0 if none in the ranking) and nDCG@10 (binary gains,
ideal ranking = every relevant document first).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.search.searcher import MODES, Searcher
from tasks.settings import Settings, get_settings

#: Results fetched per query: enough for recall@10 / nDCG@10.
EVAL_DEPTH = 10
RECALL_CUTOFFS = (1, 5, 10)


@dataclass(frozen=True)
class LabeledQuery:
    """One line of the query file."""

    query: str
    relevant_ids: frozenset[str]
    filter: dict[str, Any] | None = None


def load_queries(path: Path) -> list[LabeledQuery]:
    """Parse a JSON-lines query file.

    Raises:
        ConfigError: the file is missing, or a line is not a query with relevant ids.
    """
    if not path.is_file():
        raise ConfigError(f"No query file at {path}.")
    queries: list[LabeledQuery] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            relevant = (
                row.get("relevant_ids") or row.get("relevant_document_ids") or row.get("relevant")
            )
            if not isinstance(row.get("query"), str) or not row["query"].strip():
                raise ValueError("`query` must be a non-empty string")
            if not isinstance(relevant, list) or not relevant:
                raise ValueError("`relevant_ids` must be a non-empty list of document ids")
            queries.append(
                LabeledQuery(row["query"], frozenset(map(str, relevant)), row.get("filter") or None)
            )
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
    if not queries:
        raise ConfigError(f"{path} holds no queries.")
    return queries


# --- metrics (pure) ---------------------------------------------------------------------------


def distinct(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, first occurrence kept (chunks -> documents)."""
    return list(dict.fromkeys(ids))


def recall_at_k(ranked: Sequence[str], relevant: frozenset[str] | set[str], k: int) -> float:
    """Share of ``relevant`` found in the first ``k`` of ``ranked``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], relevant: frozenset[str] | set[str]) -> float:
    """1 / rank of the first relevant id (0 when none is ranked)."""
    for rank, doc in enumerate(ranked, 1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: frozenset[str] | set[str], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with binary relevance."""
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


@dataclass
class ModeScores:
    """Averaged metrics of one mode."""

    mode: str
    queries: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)


def score_rankings(mode: str, rankings: Sequence[tuple[LabeledQuery, Sequence[str]]]) -> ModeScores:
    """Average the metrics over ``(query, ranked document ids)`` pairs."""
    sums = {f"recall@{k}": 0.0 for k in RECALL_CUTOFFS} | {"mrr": 0.0, "ndcg@10": 0.0}
    misses: list[str] = []
    for labeled, ranked_raw in rankings:
        ranked = distinct(ranked_raw)
        for k in RECALL_CUTOFFS:
            sums[f"recall@{k}"] += recall_at_k(ranked, labeled.relevant_ids, k)
        rr = reciprocal_rank(ranked, labeled.relevant_ids)
        sums["mrr"] += rr
        sums["ndcg@10"] += ndcg_at_k(ranked, labeled.relevant_ids, 10)
        if rr == 0.0:
            misses.append(labeled.query)
    n = len(rankings)
    return ModeScores(
        mode=mode,
        queries=n,
        metrics={k: round(v / n, 4) if n else 0.0 for k, v in sums.items()},
        misses=misses,
    )


# --- running it -------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """Scores per mode."""

    query_file: str
    namespace: str | None
    modes: dict[str, ModeScores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return {
            "query_file": self.query_file,
            "namespace": self.namespace,
            "modes": {
                m: {"queries": s.queries, **s.metrics, "misses": s.misses}
                for m, s in self.modes.items()
            },
        }

    def to_text(self) -> str:
        """A small table, one row per mode."""
        names = ["recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"]
        lines = [f"{'mode':<8} {'n':>4} " + " ".join(f"{n:>9}" for n in names)]
        for mode, s in self.modes.items():
            values = " ".join(f"{s.metrics[n]:>9.3f}" for n in names)
            lines.append(f"{mode:<8} {s.queries:>4} {values}")
        return "\n".join(lines)


def evaluate(
    queries: Sequence[LabeledQuery],
    modes: Sequence[str] = MODES,
    namespace: str | None = None,
    settings: Settings | None = None,
    searcher: Searcher | None = None,
    query_file: str = "",
) -> EvaluationReport:
    """Run every query in every mode through :meth:`Searcher.search` and score the rankings."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"Unknown mode(s) {unknown}: use {list(MODES)}.")
    report = EvaluationReport(query_file=query_file, namespace=namespace)
    own = searcher is None
    searcher = searcher or Searcher(settings or get_settings())
    try:
        for mode in modes:
            rankings = []
            for q in queries:
                response = searcher.search(q.query, EVAL_DEPTH, q.filter, namespace, mode)
                rankings.append((q, [r.document_id for r in response.results]))
            report.modes[mode] = score_rankings(mode, rankings)
    finally:
        if own:
            searcher.close()
    return report
