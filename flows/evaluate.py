"""Retrieval evaluation: ``python -m flows.evaluate data/demo/queries.jsonl``.

Scores recall@1/5/10, MRR and nDCG@10 per search mode (vector, hybrid) through the same search
path as the service. ``--min-ndcg`` turns it into a gate (exit code 1 below the threshold);
``--flow`` runs it as the Prefect flow ``evaluate-retrieval`` instead of in-process.

Examples::

    python -m flows.evaluate data/demo/queries.jsonl
    python -m flows.evaluate data/demo/queries.jsonl --mode hybrid --json
    python -m flows.evaluate data/demo/queries.jsonl --min-ndcg 0.8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401  (offline defaults, before Prefect reads its settings)

from prefect import flow

import flows  # noqa: F401  (offline defaults)
from tasks.errors import PipelineError
from tasks.search.evaluation import EvaluationReport, evaluate, load_queries
from tasks.search.searcher import MODES
from tasks.search.tasks import evaluate_task


@flow(name="evaluate-retrieval")
def evaluate_retrieval(
    query_file: str, modes: list[str] | None = None, namespace: str | None = None
) -> EvaluationReport:
    """Score retrieval quality on a labeled query file, per mode."""
    return evaluate_task(query_file, modes, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="evaluate-retrieval", description="Score search quality on a labeled query file."
    )
    parser.add_argument("query_file", type=Path, help="JSON lines: query, relevant_ids, filter.")
    parser.add_argument(
        "--mode", action="append", choices=MODES, help="Mode to score (repeatable; default all)."
    )
    parser.add_argument("--namespace", default=None, help="Namespace to search.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    parser.add_argument(
        "--min-ndcg",
        type=float,
        default=None,
        help="Exit with code 1 if any scored mode's nDCG@10 is below this.",
    )
    parser.add_argument("--flow", action="store_true", help="Run as a Prefect flow.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and print the report; returns the exit code."""
    args = build_parser().parse_args(argv)
    modes = args.mode or list(MODES)
    try:
        if args.flow:
            report = evaluate_retrieval(str(args.query_file), modes, args.namespace)
        else:
            queries = load_queries(args.query_file)
            report = evaluate(queries, modes, args.namespace, query_file=str(args.query_file))
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    if args.min_ndcg is not None:
        low = {m: s.metrics["ndcg@10"] for m, s in report.modes.items()}
        failing = {m: v for m, v in low.items() if v < args.min_ndcg}
        if failing:
            print(f"below --min-ndcg {args.min_ndcg}: {failing}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
