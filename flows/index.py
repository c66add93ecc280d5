"""Flow: embed the documents models and sync their namespaces in the vector store."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow

import flows  # noqa: F401
from tasks.index import IndexResult
from tasks.steps import index_task, specs_task


@flow(name="index")
def index() -> list[IndexResult]:
    """Index every dbt model declared with ``meta.embedding``."""
    return [index_task(spec) for spec in specs_task()]


if __name__ == "__main__":
    for r in index():
        print(f"{r.namespace}: {r.embedded} embedded, {r.unchanged} unchanged, {r.deleted} deleted")
