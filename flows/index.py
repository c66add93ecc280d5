"""Flow: embed the documents models and sync their namespaces in the vector store."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401  (offline defaults, before Prefect reads its settings)

from prefect import flow

import flows  # noqa: F401
from flows.cli import run_cli
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


def main() -> None:
    """``python flows/index.py``: index every declared documents model."""
    for r in index():
        print(f"{r.namespace}: {r.embedded} embedded, {r.unchanged} unchanged, {r.deleted} deleted")


if __name__ == "__main__":
    sys.exit(run_cli(main))
