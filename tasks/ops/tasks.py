"""The operations stage's Prefect tasks: validate a run, publish its report, back up the
warehouse."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.errors import PipelineError
from tasks.index.run import IndexResult
from tasks.ops.backup import BackupResult, backup_dir
from tasks.ops.backup import dump as backup_dump
from tasks.ops.report import RunSummary, publish_run_report
from tasks.ops.validation import ValidationReport
from tasks.retry import NETWORK_RETRIES
from tasks.search.searcher import search
from tasks.settings import get_settings
from tasks.stores import get_store
from tasks.stores.base import VectorStore
from tasks.transform.dbt import DbtResult
from tasks.warehouse import get_warehouse

#: How long validation waits for an eventually consistent store (Pinecone) to show all writes.
VALIDATION_SETTLE_S = 120.0


@task(name="validate-index", timeout_seconds=300, **NETWORK_RETRIES)
def validate_task(
    index_results: list[IndexResult], dbt_result: DbtResult | None, probe_query: str | None
) -> ValidationReport:
    """Fail the run if counts disagree, dbt tests failed, or a probe search finds nothing
    (chunks the embedding provider rejected are counted and shown, not failed: see
    :func:`index_checks`)."""
    settings = get_settings()
    report = ValidationReport()
    if dbt_result is not None:
        report.add(
            "dbt tests",
            dbt_result.tests_failed == 0,
            f"{dbt_result.tests_passed} passed, {dbt_result.tests_failed} failed",
        )
    store = get_store(settings)
    try:
        for r in index_results:
            if r.dry_run:
                report.add(f"dry run of {r.namespace}", True, "nothing written; counts not checked")
                continue
            physical = r.physical_namespace or r.namespace
            want = r.chunks - r.dead_letters
            for check in index_checks(r, _settled_count(store, physical, want)):
                report.add(*check)
            if want:
                hits = search(
                    probe_query or "popular item", top_k=1, namespace=r.namespace, settings=settings
                )
                report.add(
                    f"probe search in {r.namespace}",
                    bool(hits),
                    f"top hit {hits[0].document_id}" if hits else "no results",
                )
    finally:
        store.close()
    for name, passed, detail in report.checks:
        get_run_logger().info("%s %s: %s", "PASS" if passed else "FAIL", name, detail)
    report.raise_if_failed()
    return report


def index_checks(r: IndexResult, in_store: int) -> list[tuple[str, bool, str]]:
    """The count checks of one indexed namespace, given the vectors its store holds.

    The store must hold every chunk except the dead letters (chunks the embedding provider
    rejected). Dead letters do not fail validation: they are listed as a passing check so the
    report shows them, and the next run (or ``semantic-index replay``) retries them.
    """
    physical = r.physical_namespace or r.namespace
    want = r.chunks - r.dead_letters
    return [
        (
            f"vectors in {r.namespace}",
            in_store == want,
            f"{r.chunks} chunks from {r.documents} documents, {r.dead_letters} rejected, "
            f"{in_store} in store ({physical})",
        ),
        (
            f"documents in {r.namespace}",
            r.documents > 0,
            f"{r.documents} documents in {r.model}",
        ),
        (
            f"dead letters in {r.namespace}",
            True,
            f"{r.dead_letters} chunks rejected by the embedding provider"
            + (" (not indexed; fix, then `semantic-index replay`)" if r.dead_letters else ""),
        ),
    ]


def _settled_count(store: VectorStore, namespace: str, expected: int) -> int:
    """The store's count, after waiting (bounded) for an eventually consistent store to settle."""
    wait = getattr(store, "wait_for_count", None)
    if wait is not None:
        try:
            return int(wait(namespace, expected, timeout=VALIDATION_SETTLE_S))
        except PipelineError:
            pass  # report the count it settled on below
    return store.count(namespace)


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
