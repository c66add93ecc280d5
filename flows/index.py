"""Flow: embed the documents models and sync their namespaces in the vector store."""

from __future__ import annotations

from prefect import flow

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.index.run import IndexResult
from tasks.index.tasks import embedding_slot, index_task, specs_task


# persist_result: when a failed data-pipeline run is retried, a completed index subflow is not
# re-run (its result is read back); re-running would be safe too, as indexing is incremental.
@flow(name="index", persist_result=True, timeout_seconds=3 * 3600)
def index() -> list[IndexResult]:
    """Index every dbt model declared with ``meta.embedding``.

    Each namespace holds a slot of the global embedding concurrency limit while it embeds.
    """
    results = []
    for spec in specs_task():
        with embedding_slot():
            results.append(index_task(spec))
    return results
