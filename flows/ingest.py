"""Flow: load the declared sources into ``raw_data``."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/ingest.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401  (offline defaults, before Prefect reads its settings)

from prefect import flow

import flows  # noqa: F401  (offline defaults)
from flows.cli import run_cli
from tasks.ingest.load import IngestResult
from tasks.ingest.tasks import ingest_task, read_sources


# persist_result: a retried data-pipeline run reads this result back instead of loading again.
@flow(name="ingest", log_prints=True, persist_result=True, timeout_seconds=2 * 3600)
def ingest(sources: list[str] | None = None) -> list[IngestResult]:
    """Load ``sources`` (all declared ones when ``None``), one dlt pipeline per source."""
    configs = read_sources(sources)
    return [ingest_task(source) for source in configs]


def main() -> None:
    """``python flows/ingest.py``: load every declared source and print the row counts."""
    for result in ingest():
        print(f"{result.source}: {result.rows_by_table}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
