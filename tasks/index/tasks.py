"""The index stage's Prefect tasks: read the embedding specs, index one namespace, drop
namespaces (for a rebuild), check (and repair) the namespaces against the ledger, and the
embedding concurrency slot the index flow holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.embedders import get_embedder
from tasks.index.doctor import DoctorReport, run_doctor
from tasks.index.documents import EmbeddingSpec, load_specs
from tasks.index.ledger import Ledger
from tasks.index.run import IndexResult, index_documents
from tasks.progress import OverallProgress, PhaseUpdate
from tasks.retry import NETWORK_RETRIES
from tasks.settings import get_settings
from tasks.stores import get_store
from tasks.warehouse import get_warehouse


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


@task(name="drop-namespaces", timeout_seconds=600, **NETWORK_RETRIES)
def drop_namespaces_task(namespaces: list[str]) -> list[str]:
    """Drop every physical namespace of each logical one from the store and forget it in the
    ledger (under the ledger's per-namespace lock, so no indexing run is writing meanwhile).

    Returns the physical namespaces dropped.
    """
    settings = get_settings()
    logger = get_run_logger()
    store = get_store(settings)
    ledger = Ledger(get_warehouse(settings), settings.index_state_schema)
    dropped: list[str] = []
    try:
        ledger.setup()
        for logical in namespaces:
            with ledger.lock(logical):
                physical = [entry.physical for entry in ledger.namespaces(logical)]
                # The logical name is also the first build's table (and a pre-ledger one's).
                for name in dict.fromkeys([*physical, logical]):
                    store.drop_namespace(name)
                    ledger.forget_namespace(name)
                    dropped.append(name)
                    logger.info("Dropped namespace %s (logical %s)", name, logical)
    finally:
        ledger.close()
        store.close()
    return dropped


@task(name="index-doctor", timeout_seconds=3600, **NETWORK_RETRIES)
def doctor_task(repair: bool = False, namespace: str | None = None) -> list[DoctorReport]:
    """Compare every serving namespace (or only ``namespace``) of the store with the ledger;
    with ``repair``, fix the drift under each namespace's lock (see :mod:`tasks.index.doctor`).
    A retry is safe: a repair re-diagnoses before it writes."""
    reports = run_doctor(get_settings(), None if namespace is None else [namespace], fix=repair)
    for report in reports:
        get_run_logger().info("%s", report.to_text())
    return reports


@contextmanager
def embedding_slot() -> Iterator[None]:
    """Hold one slot of the global concurrency limit ``EMBEDDING_CONCURRENCY_LIMIT`` while
    embedding, so all runs on all workers share the provider's capacity.

    Non-strict: when the limit does not exist (not created by ``semantic-index setup``)
    Prefect lets the caller through, so ad hoc runs on the temporary local server still work.
    """
    name = get_settings().embedding_concurrency_limit
    if not name:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=False):
        yield
