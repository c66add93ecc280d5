"""One command that prepares a Prefect server for the pipeline's deployments.

Usage (against the server in ``PREFECT_API_URL``)::

    ALERT_WEBHOOK_URL=https://hooks.slack.com/services/... python -m flows.setup_alerts
    prefect deploy --all

It creates or updates, idempotently: the ``process`` work pool, the global concurrency limit for
embedding calls (``EMBEDDING_CONCURRENCY_LIMIT``), the webhook notification block and the alert
automations (failure, crash, timeout, over-long run). Without ``ALERT_WEBHOOK_URL`` it sets up
everything except alerts. The one-run-at-a-time rule is not here: each deployment declares its
own ``concurrency_limit`` in ``prefect.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flows  # noqa: F401  (offline defaults)
from tasks.errors import PipelineError
from tasks.ops.alerts import setup_operations
from tasks.settings import get_settings

DEFAULT_WORK_POOL = "pipeline-process"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.setup_alerts", description=__doc__)
    parser.add_argument("--work-pool", default=DEFAULT_WORK_POOL, help="Process work pool name.")
    parser.add_argument(
        "--embedding-slots",
        type=int,
        default=2,
        help="Embedding batches allowed at once across all runs and workers.",
    )
    parser.add_argument(
        "--max-run-minutes",
        type=int,
        default=120,
        help="Alert when a pipeline run is still running after this many minutes.",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        limits = {}
        if settings.embedding_concurrency_limit:
            limits[settings.embedding_concurrency_limit] = args.embedding_slots
        result = setup_operations(
            work_pool=args.work_pool,
            concurrency_limits=limits,
            webhook_url=(
                settings.alert_webhook_url.get_secret_value()
                if settings.alert_webhook_url
                else None
            ),
            max_run_minutes=args.max_run_minutes,
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Work pool: {result.work_pool}")
    for name, limit in result.concurrency_limits.items():
        print(f"Global concurrency limit: {name} = {limit}")
    if result.automations:
        print(f"Alert block: {result.block_id}; automations: {', '.join(result.automations)}")
    else:
        print("Alerts: not configured (set ALERT_WEBHOOK_URL and run again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
