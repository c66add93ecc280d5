"""The ingest stage's Prefect tasks: read the sources file, load one source."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.ingest.load import IngestResult, ingest_source
from tasks.ingest.sources import load_sources_file
from tasks.ingest.sources.config import AnySourceConfig
from tasks.retry import NETWORK_RETRIES
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse


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
