"""Flow: build and test the dbt project (every dbt node appears as a Prefect task)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.settings import get_settings
from tasks.transform.dbt import DbtResult, run_dbt
from tasks.warehouse import get_warehouse


# persist_result: a retried data-pipeline run reads a completed build back instead of rebuilding.
@flow(
    name="transform",
    retries=1,
    retry_delay_seconds=10,
    persist_result=True,
    timeout_seconds=2 * 3600,
)
def transform(docs: bool | None = None) -> DbtResult:
    """``dbt build`` (``dbt retry`` on a retried attempt), then ``dbt docs generate``."""
    settings = get_settings()
    warehouse = get_warehouse(settings)
    # A retried attempt re-runs only what failed or was skipped last time.
    command = ["retry"] if (flow_run.run_count or 1) > 1 else ["build"]
    result = run_dbt(command, settings, warehouse)
    if settings.dbt_docs if docs is None else docs:
        run_dbt(["docs", "generate"], settings, warehouse, mirror_nodes=False)
        get_run_logger().info("dbt docs written to %s", settings.dbt_target_dir)
    return result
