"""The operations stage's Prefect tasks: validate a run, publish its report, back up the
warehouse."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.index.run import IndexResult
from tasks.ops.backup import BackupResult, backup_dir
from tasks.ops.backup import dump as backup_dump
from tasks.ops.report import RunSummary, publish_run_report
from tasks.ops.validation import ValidationReport, validate_run
from tasks.retry import NETWORK_RETRIES
from tasks.settings import get_settings
from tasks.transform.dbt import DbtResult
from tasks.warehouse import get_warehouse


@task(name="validate-index", timeout_seconds=300, **NETWORK_RETRIES)
def validate_task(
    index_results: list[IndexResult], dbt_result: DbtResult | None, probe_query: str | None
) -> ValidationReport:
    """Fail the run if counts disagree, dbt tests failed, or a probe search finds nothing (the
    checks: :func:`tasks.ops.validation.validate_run`)."""
    report = validate_run(index_results, dbt_result, probe_query, get_settings())
    for name, passed, detail in report.checks:
        get_run_logger().info("%s %s: %s", "PASS" if passed else "FAIL", name, detail)
    report.raise_if_failed()
    return report


@task(name="publish-run-report", timeout_seconds=120)
def report_task(summary: RunSummary) -> None:
    """Write the run report artifacts (markdown summary and tables)."""
    publish_run_report(summary)


@task(name="backup-warehouse", timeout_seconds=2 * 3600, **NETWORK_RETRIES)
def backup_task() -> BackupResult:
    """``pg_dump -Fc`` the warehouse into ``BACKUP_DIR`` and keep the newest ``BACKUP_KEEP``."""
    settings = get_settings()
    result = backup_dump(get_warehouse(settings), backup_dir(settings), settings.backup_keep)
    get_run_logger().info(
        "Backup %s (%d bytes); removed %d old backup(s)",
        result.path.name,
        result.size_bytes,
        len(result.removed),
    )
    return result
