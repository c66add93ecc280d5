"""Flow: retrieval evaluation on a labeled query file.

Scores recall@1/5/10, MRR and nDCG@10 per search mode (vector, hybrid) through the same search
path as the service. ``semantic-index evaluate FILE`` runs it in-process (``--flow`` as this
flow); ``--min-ndcg`` turns it into a gate.
"""

from __future__ import annotations

from prefect import flow

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.search.evaluation import EvaluationReport
from tasks.search.tasks import evaluate_task


@flow(name="evaluate-retrieval")
def evaluate_retrieval(
    query_file: str, modes: list[str] | None = None, namespace: str | None = None
) -> EvaluationReport:
    """Score retrieval quality on a labeled query file, per mode."""
    return evaluate_task(query_file, modes, namespace)
