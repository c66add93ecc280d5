"""The pipeline's Prefect tasks: one per side effect, retries declared on the decorator.

Flows in ``flows/`` compose these. The library functions they call stay Prefect-free so they can
be used from a notebook directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from tasks.backup import BackupResult, backup_dir
from tasks.backup import dump as backup_dump
from tasks.documents import EmbeddingSpec, load_specs
from tasks.embedders import get_embedder
from tasks.errors import PipelineError, is_retryable
from tasks.index import IndexResult, index_documents
from tasks.ingest import IngestResult, ingest_source
from tasks.progress import OverallProgress, PhaseUpdate
from tasks.search import search
from tasks.settings import get_settings
from tasks.sources import load_sources_file
from tasks.sources.config import AnySourceConfig
from tasks.stores import get_store
from tasks.stores.base import VectorStore
from tasks.transform import DbtResult
from tasks.validate import ValidationReport
from tasks.warehouse import get_warehouse

#: HTTP statuses worth retrying; every other 4xx is a client error a retry cannot fix.
_RETRYABLE_HTTP = {408, 409, 425, 429}


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can help: :func:`tasks.errors.is_retryable` plus HTTP and driver rules.

    HTTP 4xx (except timeouts, conflicts and rate limits) and OpenAI's ``insufficient_quota``
    (which also arrives as 429) are permanent; 5xx are transient. PostgreSQL errors about the
    statement or the data are permanent; connection errors are transient.
    """
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        if "insufficient_quota" in str(exc):
            return False
        return status >= 500 or status in _RETRYABLE_HTTP
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return is_retryable(exc)


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition: skip retries for errors that a retry cannot fix (bad config, bad data,
    HTTP 4xx, quota exhausted, SQL errors)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BaseException) or is_transient(exc)


#: How long validation waits for an eventually consistent store (Pinecone) to show all writes.
VALIDATION_SETTLE_S = 120.0

NETWORK_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


@task(name="load-sources-file", timeout_seconds=60)
def read_sources(names: list[str] | None) -> list[AnySourceConfig]:
    """Validate the sources file and pick the sources to load (fails before any load)."""
    return load_sources_file(get_settings().sources_file).get(names)


@task(name="ingest-source", timeout_seconds=3600, **NETWORK_RETRIES)
def ingest_task(source: AnySourceConfig) -> IngestResult:
    """Load one source into ``raw_data`` with dlt."""
    settings = get_settings()
    base_dir = load_sources_file(settings.sources_file).base_dir
    result = ingest_source(source, base_dir, settings, get_warehouse(settings))
    get_run_logger().info("Loaded %s: %s", source.name, result.rows_by_table)
    return result


@task(name="read-embedding-specs", timeout_seconds=60)
def specs_task() -> list[EmbeddingSpec]:
    """The documents models declared for embedding in the dbt project."""
    specs = load_specs(get_settings())
    get_run_logger().info("Documents models to index: %s", [s.model for s in specs])
    return specs


@task(name="index-namespace", timeout_seconds=3600, **NETWORK_RETRIES)
def index_task(spec: EmbeddingSpec) -> IndexResult:
    """Embed what changed in one documents model and sync its namespace in the store.

    A retry after a crash or a transient error resumes from the ledger: acknowledged batches are
    neither re-embedded nor re-written. Embedding errors our own retry layer gave up on are not
    retried again here (they are marked non-retryable).
    """
    import re

    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    settings = get_settings()
    logger = get_run_logger()
    embedder = get_embedder(settings)
    store = get_store(settings)
    key = "index-" + re.sub(r"[^a-z0-9-]", "-", spec.namespace.lower())
    # Sync call in a sync task: a UUID (the annotation also allows a coroutine).
    artifact_id: Any = create_progress_artifact(
        progress=0.0, key=key, description=f"Indexing {spec.namespace}: starting"
    )
    overall = OverallProgress()

    def progress(update: PhaseUpdate) -> None:
        logger.info("%s", update.to_text())
        if artifact_id is not None:
            update_progress_artifact(
                artifact_id, progress=overall.update(update), description=update.to_text()
            )

    try:
        result = index_documents(
            spec, get_warehouse(settings), embedder, store, progress, settings=settings
        )
    finally:
        store.close()
    if artifact_id is not None:
        update_progress_artifact(artifact_id, progress=100.0)
    logger.info("%s", result.to_text())
    return result


@task(name="validate-index", timeout_seconds=300, **NETWORK_RETRIES)
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
    store = get_store(settings)
    try:
        for r in index_results:
            if r.dry_run:
                report.add(f"dry run of {r.namespace}", True, "nothing written; counts not checked")
                continue
            physical = r.physical_namespace or r.namespace
            in_store = _settled_count(store, physical, r.chunks)
            report.add(
                f"vectors in {r.namespace}",
                in_store == r.chunks,
                f"{r.chunks} chunks from {r.documents} documents, {in_store} in store ({physical})",
            )
            report.add(
                f"documents in {r.namespace}",
                r.documents > 0,
                f"{r.documents} documents in {r.model}",
            )
            if r.chunks:
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


def _settled_count(store: VectorStore, namespace: str, expected: int) -> int:
    """The store's count, after waiting (bounded) for an eventually consistent store to settle."""
    wait = getattr(store, "wait_for_count", None)
    if wait is not None:
        try:
            return int(wait(namespace, expected, timeout=VALIDATION_SETTLE_S))
        except PipelineError:
            pass  # report the count it settled on below
    return store.count(namespace)


@contextmanager
def embedding_slot() -> Iterator[None]:
    """Hold one slot of the global concurrency limit ``EMBEDDING_CONCURRENCY_LIMIT`` while
    embedding, so all runs on all workers share the provider's capacity.

    Non-strict: when the limit does not exist (not created by ``python -m flows.setup_alerts``)
    Prefect lets the caller through, so ad hoc runs on the temporary local server still work.
    """
    name = get_settings().embedding_concurrency_limit
    if not name:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=False):
        yield


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
