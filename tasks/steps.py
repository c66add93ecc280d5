"""The pipeline's Prefect tasks: one per side effect, retries declared on the decorator.

Flows in ``flows/`` compose these. The library functions they call stay Prefect-free so they can
be used from a notebook directly.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from tasks.documents import EmbeddingSpec, load_specs
from tasks.embedders import get_embedder
from tasks.errors import is_retryable
from tasks.index import IndexResult, index_documents
from tasks.ingest import IngestResult, ingest_source
from tasks.search import search
from tasks.settings import get_settings
from tasks.sources import load_sources_file
from tasks.sources.config import CsvSourceConfig
from tasks.stores import get_store
from tasks.transform import DbtResult
from tasks.validate import ValidationReport
from tasks.warehouse import get_warehouse


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition: skip retries for errors that a retry cannot fix (bad config, bad data)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BaseException) or is_retryable(exc)


NETWORK_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


@task(name="load-sources-file", timeout_seconds=60)
def read_sources(names: list[str] | None) -> list[CsvSourceConfig]:
    """Validate the sources file and pick the sources to load (fails before any load)."""
    return load_sources_file(get_settings().sources_file).get(names)


@task(name="ingest-source", timeout_seconds=3600, **NETWORK_RETRIES)
def ingest_task(source: CsvSourceConfig) -> IngestResult:
    """Load one source into ``raw_data`` with dlt."""
    settings = get_settings()
    base_dir = load_sources_file(settings.sources_file).base_dir
    result = ingest_source(source, base_dir, settings, get_warehouse(settings))
    get_run_logger().info("Loaded %s: %s", source.name, result.rows_by_table)
    return result


@task(name="read-embedding-specs", timeout_seconds=60)
def specs_task() -> list[EmbeddingSpec]:
    """The documents models declared for embedding in the dbt project."""
    specs = load_specs(get_settings().dbt_project_dir)
    get_run_logger().info("Documents models to index: %s", [s.model for s in specs])
    return specs


@task(name="index-namespace", timeout_seconds=3600, **NETWORK_RETRIES)
def index_task(spec: EmbeddingSpec) -> IndexResult:
    """Embed what changed in one documents model and sync its namespace in the store."""
    settings = get_settings()
    logger = get_run_logger()
    embedder = get_embedder(settings)
    store = get_store(settings)

    def progress(done: int, total: int) -> None:
        logger.info("%s: embedded %d/%d chunks", spec.namespace, done, total)

    try:
        return index_documents(spec, get_warehouse(settings), embedder, store, progress)
    finally:
        store.close()


@task(name="validate-index", timeout_seconds=300)
def validate_task(
    index_results: list[IndexResult], dbt_result: DbtResult | None, probe_query: str | None
) -> ValidationReport:
    """Fail the run if counts disagree, dbt tests failed, or a probe search finds nothing."""
    settings = get_settings()
    report = ValidationReport()
    if dbt_result is not None:
        report.add(
            "dbt tests",
            dbt_result.tests_failed == 0,
            f"{dbt_result.tests_passed} passed, {dbt_result.tests_failed} failed",
        )
    for r in index_results:
        report.add(
            f"vectors in {r.namespace}",
            r.vectors_in_store == r.chunks,
            f"{r.chunks} chunks from {r.documents} documents, {r.vectors_in_store} in store",
        )
        report.add(
            f"documents in {r.namespace}", r.documents > 0, f"{r.documents} documents in {r.model}"
        )
        if r.chunks:
            hits = search(probe_query or "popular item", top_k=1, namespace=r.namespace,
                          settings=settings)
            report.add(
                f"probe search in {r.namespace}",
                bool(hits),
                f"top hit {hits[0].document_id}" if hits else "no results",
            )
    for name, passed, detail in report.checks:
        get_run_logger().info("%s %s: %s", "PASS" if passed else "FAIL", name, detail)
    report.raise_if_failed()
    return report
