"""Load sources into the warehouse's ``raw_data`` schema with dlt.

Each source gets its own dlt pipeline (``ingest_<name>``) with its state under
``<DATA_DIR>/dlt``. A load package left behind by a crashed run is finished before new data is
extracted: dlt's ``run(data)`` would otherwise load the old package and silently skip the new data.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from tasks.errors import SourceError, is_retryable
from tasks.settings import Settings
from tasks.sources import build_source, redaction
from tasks.sources.config import AnySourceConfig
from tasks.sources.redaction import redact
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


#: dlt settings changed from dlt's defaults (measured in bench/bench_ingest.py, see BENCHMARKS.md).
#: Set as environment defaults when a pipeline is made, so an environment variable still wins.
DLT_DEFAULTS = {
    # Arrow tables (the CSV fast path) get _dlt_load_id too: staging models keep only rows whose
    # _dlt_load_id belongs to a completed load. (The CSV source adds _dlt_id itself, in bulk.)
    "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID": "true",
    # Load files stay uncompressed: gzip (csv) and snappy (parquet) cost more time than they
    # save on a local disk.
    "DATA_WRITER__DISABLE_COMPRESSION": "true",
    "DATA_WRITER__COMPRESSION": "none",
    # Load files of at most 16 MB, loaded by 4 parallel COPYs. A parquet load job holds its whole
    # file in memory (ADBC), so this bounds the load step's memory whatever the source's size.
    "DATA_WRITER__FILE_MAX_BYTES": str(16 << 20),
    "LOAD__WORKERS": "4",
    # Disk: dlt would keep every loaded file (a copy of each source, forever) and the last
    # merge's rows in <raw schema>_staging. Each package's state and schema stay.
    "LOAD__DELETE_COMPLETED_JOBS": "true",
    "LOAD__TRUNCATE_STAGING_DATASET": "true",
}


def make_pipeline(source_name: str, settings: Settings, warehouse: Warehouse) -> dlt.Pipeline:
    """The dlt pipeline that loads ``source_name`` into ``settings.raw_schema``."""
    for name, value in DLT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    redaction.install()
    return dlt.pipeline(
        pipeline_name=f"ingest_{source_name}",
        pipelines_dir=str(settings.resolved_data_dir / "dlt"),
        # No UNIQUE/PRIMARY KEY constraints: maintaining them tripled COPY time, merges keep keys
        # unique (delete-insert) and staging models de-duplicate anyway.
        destination=dlt.destinations.postgres(
            credentials=warehouse.dlt_credentials(), create_indexes=False
        ),
        dataset_name=settings.raw_schema,
        progress="log",
    )


def ingest_source(
    config: AnySourceConfig, base_dir: Path, settings: Settings, warehouse: Warehouse
) -> IngestResult:
    """Extract, normalize and load one source; return row counts per table.

    A package left by a crashed or killed run is loaded first (its rows are complete and its
    state matches them); only then is new data extracted, so neither is lost or duplicated.

    Raises:
        SourceError: the source is unreachable, unreadable, malformed or breaks its contract.
            Nothing of this run's data is loaded in that case and incremental state is unchanged.
    """
    pipeline = make_pipeline(config.name, settings, warehouse)
    result = IngestResult(source=config.name)

    if pipeline.has_pending_data:
        logger.warning("Source %s: finishing a load left pending by an earlier run", config.name)
        try:
            pipeline.normalize()
            pipeline.load()
        except PipelineStepFailed as exc:
            raise SourceError(
                redact(
                    f"Source {config.name}: the load left pending by an earlier run still fails: "
                    f"{_root_cause_exc(exc)}"
                )
            ) from None
        result.recovered_pending = True

    try:
        source = build_source(config, base_dir)
        pipeline.extract(source)
        normalize_info = pipeline.normalize()
    except PipelineStepFailed as exc:
        # Bad data or an unreachable source: drop this run's package and restore the state it
        # changed (incremental cursors, file fingerprints) so the next run starts over cleanly.
        if pipeline.has_pending_data:
            pipeline.abort_packages()
        raise _source_error(config.name, exc) from None

    try:
        load_info: LoadInfo = pipeline.load()
    except PipelineStepFailed as exc:
        # The package stays pending: the next run loads it before extracting anything new.
        raise _source_error(config.name, exc) from None

    result.rows_by_table = {
        table: count
        for table, count in normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }
    result.load_ids = list(load_info.loads_ids)
    logger.info("Source %s loaded %s", config.name, result.rows_by_table)
    return result


def _source_error(name: str, exc: PipelineStepFailed) -> SourceError:
    """A SourceError carrying the root cause; retryable when the root cause is transient."""
    cause = _root_cause_exc(exc)
    # The one exit of every source's errors (web included): secrets are masked here.
    error = SourceError(redact(f"Source {name}: {cause}"))
    # Our own errors say whether they are retryable; is_retryable judges the rest.
    error.retryable = is_retryable(cause)
    return error


def _root_cause_exc(exc: BaseException) -> BaseException:
    """The innermost error of a dlt step failure, or the first of our own on the way."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
        if isinstance(seen, SourceError):
            return seen
    return seen
