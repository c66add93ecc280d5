"""Flow: rebuild the vector index from scratch (drop every declared namespace, then index).

Use it when the store is suspected to be out of step with the documents (lost or edited by
hand). A new embedding model or chunker does not need it: indexing builds the new configuration
next to the serving one and switches over (tasks/namespaces.py). This flow is the blunt tool:
search answers nothing for a namespace between the drop and the end of its re-index, so run it in
a quiet hour. Embeddings cached by content hash are reused, so it costs little provider time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401  (offline defaults, before Prefect reads its settings)

from prefect import flow, get_run_logger, task

import flows  # noqa: F401  (offline defaults)
from flows.index import index
from tasks.index import IndexResult
from tasks.ledger import Ledger
from tasks.settings import get_settings
from tasks.steps import NETWORK_RETRIES, specs_task
from tasks.stores import get_store
from tasks.warehouse import get_warehouse


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


@flow(name="rebuild-index", log_prints=True, timeout_seconds=6 * 3600)
def rebuild() -> list[IndexResult]:
    """Drop every namespace declared in the dbt project and index it again from the documents."""
    drop_namespaces_task(sorted({spec.namespace for spec in specs_task()}))
    return index()


if __name__ == "__main__":
    for r in rebuild():
        print(f"{r.namespace}: {r.embedded} embedded, {r.vectors_in_store} vectors in store")
