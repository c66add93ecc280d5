"""Flow: rebuild the vector index from scratch (drop every declared namespace, then index).

Use it when the store is suspected to be out of step with the documents (lost or edited by
hand). A new embedding model or chunker does not need it: indexing builds the new configuration
next to the serving one and switches over (tasks/index/namespaces.py). This flow is the blunt tool:
search answers nothing for a namespace between the drop and the end of its re-index, so run it in
a quiet hour. Embeddings cached by content hash are reused, so it costs little provider time.
"""

from __future__ import annotations

from prefect import flow

from flows.index import index
from tasks.index.run import IndexResult
from tasks.index.tasks import drop_namespaces_task, specs_task


@flow(name="rebuild-index", log_prints=True, timeout_seconds=6 * 3600)
def rebuild() -> list[IndexResult]:
    """Drop every namespace declared in the dbt project and index it again from the documents."""
    drop_namespaces_task(sorted({spec.namespace for spec in specs_task()}))
    return index()
