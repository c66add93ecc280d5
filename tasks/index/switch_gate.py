"""The evaluation gate of a blue/green switch.

A rebuild (a new embedding model, the ONNX backend, other chunking: anything in the index
fingerprint) builds a new physical namespace beside the serving one. With a labeled query file
for the logical namespace in ``INDEX_SWITCH_GATES``, :func:`check_switch_gate` scores the new
namespace on it (pinned through :class:`~tasks.search.searcher.Searcher`'s
``physical_namespaces``, so search keeps using the serving one meanwhile) before the switch, and
refuses it below ``INDEX_SWITCH_MIN_NDCG``: the serving namespace stays, the candidate is kept
(a later run re-scores it without re-embedding anything), and the error says both scores.
It is the same scoring as ``semantic-index evaluate FILE --min-ndcg X``.
"""

from __future__ import annotations

import logging

from tasks.embedders.base import Embedder
from tasks.errors import SwitchGateFailed
from tasks.search.evaluation import ModeScores, evaluate, load_queries
from tasks.search.searcher import Searcher
from tasks.settings import Settings
from tasks.stores.base import VectorStore

logger = logging.getLogger(__name__)

NDCG = "ndcg@10"


def check_switch_gate(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    logical: str,
    candidate: str,
    serving: str | None,
) -> ModeScores | None:
    """Score ``candidate`` (and ``serving``, for the message) on the gate file of ``logical``;
    ``None`` when ``logical`` has no gate.

    Raises:
        ConfigError: the gate's query file is missing or malformed.
        SwitchGateFailed: ``candidate`` scored below ``INDEX_SWITCH_MIN_NDCG``.
    """
    path = settings.index_switch_gates.get(logical)
    if path is None:
        return None
    queries = load_queries(path)
    mode = settings.search_mode

    def score(physical: str) -> ModeScores:
        searcher = Searcher(
            settings, store=store, embedder=embedder, physical_namespaces={logical: physical}
        )
        try:
            report = evaluate(queries, [mode], logical, settings, searcher, str(path))
        finally:
            searcher.close()
        return report.modes[mode]

    scores = score(candidate)
    got, need = scores.metrics[NDCG], settings.index_switch_min_ndcg
    old = f", the serving {serving} {score(serving).metrics[NDCG]:.3f}" if serving else ""
    if got < need:
        raise SwitchGateFailed(
            f"The rebuilt namespace {candidate} scored nDCG@10 {got:.3f} on {path} ({mode}, "
            f"{scores.queries} queries{old}), below INDEX_SWITCH_MIN_NDCG={need}: "
            f"{serving or 'nothing'} keeps serving {logical}. The candidate is kept; fix the "
            "configuration that changed (model, backend, chunking) or lower the gate, then "
            "re-run: the next run scores it again without embedding anything."
        )
    logger.info(
        "Switch gate of %s passed: %s scored nDCG@10 %.3f (>= %s)%s",
        logical, candidate, got, need, old,
    )  # fmt: skip
    return scores
