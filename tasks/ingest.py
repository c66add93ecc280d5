"""Load sources into the warehouse's ``raw_data`` schema with dlt.

Each source gets its own dlt pipeline (``ingest_<name>``) with its state under
``<DATA_DIR>/dlt``. A load package left behind by a crashed run is finished before new data is
extracted: dlt's ``run(data)`` would otherwise load the old package and silently skip the new data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from tasks.errors import SourceError
from tasks.settings import Settings
from tasks.sources import build_source
from tasks.sources.config import CsvSourceConfig
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """What one source load did."""

    source: str
    rows_by_table: dict[str, int] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)
    recovered_pending: bool = False

    @property
    def rows(self) -> int:
        """Rows loaded across all tables."""
        return sum(self.rows_by_table.values())


def make_pipeline(source_name: str, settings: Settings, warehouse: Warehouse) -> dlt.Pipeline:
    """The dlt pipeline that loads ``source_name`` into ``settings.raw_schema``."""
    return dlt.pipeline(
        pipeline_name=f"ingest_{source_name}",
        pipelines_dir=str(settings.resolved_data_dir / "dlt"),
        destination=dlt.destinations.postgres(credentials=warehouse.dlt_credentials()),
        dataset_name=settings.raw_schema,
        progress="log",
    )


def ingest_source(
    config: CsvSourceConfig, base_dir: Path, settings: Settings, warehouse: Warehouse
) -> IngestResult:
    """Extract, normalize and load one source; return row counts per table.

    Raises:
        SourceError: the source is unreadable, malformed or produced no rows. Nothing of this
            run's data is loaded in that case.
    """
    pipeline = make_pipeline(config.name, settings, warehouse)
    result = IngestResult(source=config.name)

    if pipeline.has_pending_data:
        logger.warning("Source %s: finishing a load left pending by an earlier run", config.name)
        pipeline.normalize()
        pipeline.load()
        result.recovered_pending = True

    try:
        source = build_source(config, base_dir)
        pipeline.extract(source)
    except PipelineStepFailed as exc:
        if pipeline.has_pending_data:
            pipeline.abort_packages()
        raise SourceError(f"Source {config.name}: {_root_cause(exc)}") from None

    extracted = _extracted_rows(pipeline)
    empty = [spec.table for spec in config.resources if extracted.get(spec.table, 0) == 0]
    if empty:
        pipeline.abort_packages()
        raise SourceError(
            f"Source {config.name} produced no rows for table(s) {empty}; nothing was loaded. "
            "Check the files have data rows, or remove the resource from the sources file."
        )

    try:
        normalize_info = pipeline.normalize()
        load_info: LoadInfo = pipeline.load()
    except PipelineStepFailed as exc:
        raise SourceError(f"Source {config.name}: {_root_cause(exc)}") from None

    result.rows_by_table = {
        table: count
        for table, count in normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }
    result.load_ids = list(load_info.loads_ids)
    logger.info("Source %s loaded %s", config.name, result.rows_by_table)
    return result


def _extracted_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    trace = pipeline.last_trace
    info = trace.last_extract_info if trace else None
    if info is None:
        return {}
    counts: dict[str, int] = {}
    for metrics in info.metrics.values():
        for m in metrics:
            for table, tm in m["table_metrics"].items():
                counts[table] = counts.get(table, 0) + tm.items_count
    return counts


def _root_cause(exc: BaseException) -> str:
    """The innermost error message of a dlt step failure (dlt wraps errors several times)."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
        if isinstance(seen, SourceError):
            return str(seen)
    return str(seen)
