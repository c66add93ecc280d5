"""The search stage's Prefect task: score retrieval quality on a labeled query file."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from tasks.search.evaluation import EvaluationReport, evaluate, load_queries
from tasks.search.searcher import MODES


@task(name="score-retrieval", timeout_seconds=1800)
def evaluate_task(
    query_file: str, modes: list[str] | None = None, namespace: str | None = None
) -> EvaluationReport:
    """Score retrieval on a labeled query file, per mode (a gate for index rebuilds)."""
    queries = load_queries(Path(query_file))
    report = evaluate(queries, modes or list(MODES), namespace, query_file=query_file)
    get_run_logger().info("Retrieval quality on %s:\n%s", query_file, report.to_text())
    return report
