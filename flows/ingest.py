"""Flow: load the declared sources into ``raw_data``."""

from __future__ import annotations

from prefect import flow

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.ingest.load import IngestResult
from tasks.ingest.tasks import ingest_task, read_sources


# persist_result: a retried data-pipeline run reads this result back instead of loading again.
@flow(name="ingest", log_prints=True, persist_result=True, timeout_seconds=2 * 3600)
def ingest(sources: list[str] | None = None) -> list[IngestResult]:
    """Load ``sources`` (all declared ones when ``None``), one dlt pipeline per source."""
    configs = read_sources(sources)
    return [ingest_task(source) for source in configs]
