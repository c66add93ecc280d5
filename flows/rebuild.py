"""Flow: rebuild the vector index from scratch (drop every declared namespace, then index).

Use it after changing the embedding model or chunking, or when the store is suspected to be out
of step with the documents. Search answers nothing for a namespace between the drop and the end
of its re-index: schedule it in a quiet hour (blue/green rebuilds are issue 4's job).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, get_run_logger, task

import flows  # noqa: F401  (offline defaults)
from flows.index import index
from tasks.index import IndexResult
from tasks.settings import get_settings
from tasks.steps import NETWORK_RETRIES, specs_task
from tasks.stores import get_store


@task(name="drop-namespaces", timeout_seconds=600, **NETWORK_RETRIES)
def drop_namespaces_task(namespaces: list[str]) -> list[str]:
    """Drop the namespaces' contents in the vector store."""
    store = get_store(get_settings())
    try:
        for namespace in namespaces:
            store.drop_namespace(namespace)
            get_run_logger().info("Dropped namespace %s", namespace)
    finally:
        store.close()
    return namespaces


@flow(name="rebuild-index", log_prints=True, timeout_seconds=6 * 3600)
def rebuild() -> list[IndexResult]:
    """Drop every namespace declared in the dbt project and index it again from the documents."""
    drop_namespaces_task(sorted({spec.namespace for spec in specs_task()}))
    return index()


if __name__ == "__main__":
    for r in rebuild():
        print(f"{r.namespace}: {r.embedded} embedded, {r.vectors_in_store} vectors in store")
