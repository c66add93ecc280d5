"""Load sources into the warehouse's ``raw_data`` schema with dlt.

Each source gets its own dlt pipeline (``ingest_<name>``) with its state under
``<DATA_DIR>/dlt``. A load package left behind by a crashed run is finished before new data is
extracted: dlt's ``run(data)`` would otherwise load the old package and silently skip the new data.
A package that cannot be finished (a kill mid-normalize can leave it half moved) is discarded with
dlt's own ``abort_packages()``, which rewinds the pipeline state to before it, so its data is
extracted again from the source.

Loads of one source are serialised across processes and machines by a PostgreSQL advisory lock
keyed by the source (``INGEST_LOCK_WAIT_S`` bounds the wait): two runs at once would share the
dlt pipeline's working directory and the source's tables.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dlt
import psycopg
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed
from psycopg import sql

from tasks.errors import SourceBusy, SourceError
from tasks.ingest.sources import build_source, merge_tables, redaction
from tasks.ingest.sources.config import AnySourceConfig
from tasks.ingest.sources.contracts import REJECTED_SUFFIX
from tasks.ingest.sources.redaction import redact
from tasks.retry import is_transient
from tasks.settings import Settings
from tasks.warehouse import Warehouse, advisory_lock

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """What one source load did."""

    source: str
    rows_by_table: dict[str, int] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)
    recovered_pending: bool = False
    #: Load packages of an earlier run that could not be completed and were discarded.
    discarded_packages: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows loaded across all tables (``<table>__rejected`` ones included)."""
        return sum(self.rows_by_table.values())

    @property
    def rejected(self) -> int:
        """Rows this load sent to ``<table>__rejected``: quarantined records and dead-letter
        pages (see :mod:`tasks.ingest.sources.contracts`)."""
        return sum(n for t, n in self.rows_by_table.items() if t.endswith(REJECTED_SUFFIX))


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
    state matches them); only then is new data extracted, so neither is lost or duplicated. A
    package that cannot be loaded is discarded and its data extracted again (see the module
    doc). Another run of the same source holding its lock is waited for.

    Raises:
        SourceBusy: another run held the source's lock for longer than ``INGEST_LOCK_WAIT_S``.
        SourceError: the source is unreachable, unreadable, malformed or breaks its contract.
            Nothing of this run's data is loaded in that case and incremental state is unchanged.
    """
    with source_lock(config.name, settings, warehouse):
        return _ingest_locked(config, base_dir, settings, warehouse)


@contextmanager
def source_lock(name: str, settings: Settings, warehouse: Warehouse) -> Iterator[None]:
    """Hold the source's load lock (waiting up to ``settings.ingest_lock_wait_s``).

    Raises:
        SourceBusy: another run still holds it; the message names the source and the holder.
    """
    # The holder's own pid and host go in application_name: pg_stat_activity shows the server
    # backend's pid, not the client's.
    application = f"ingest {name} pid {os.getpid()} on {socket.gethostname()}"[:63]
    conn = warehouse.connect(autocommit=True, application_name=application)

    def busy(holders: str) -> SourceBusy:
        return SourceBusy(
            f"Source {name}: another run is loading it and still held its lock after "
            f"{settings.ingest_lock_wait_s:g}s (held by {holders}). Let that run finish (or stop "
            "it), then run again; raise INGEST_LOCK_WAIT_S to wait longer."
        )

    try:
        with advisory_lock(
            conn, f"ingest:{settings.raw_schema}:{name}", settings.ingest_lock_wait_s, busy
        ):
            yield
    finally:
        conn.close()


def _ingest_locked(
    config: AnySourceConfig, base_dir: Path, settings: Settings, warehouse: Warehouse
) -> IngestResult:
    pipeline = make_pipeline(config.name, settings, warehouse)
    result = IngestResult(source=config.name)
    if _has_pending(pipeline):
        pipeline = _finish_pending(pipeline, config.name, settings, warehouse, result)

    # Loading straight into an empty table (see empty_tables) is right only when this run's
    # package is the one load to come; _finish_pending has loaded or discarded the rest.
    empty = frozenset() if _has_pending(pipeline) else empty_tables(config, settings, warehouse)
    try:
        source = build_source(config, base_dir, empty)
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


def empty_tables(
    config: AnySourceConfig, settings: Settings, warehouse: Warehouse
) -> frozenset[str]:
    """The source's ``merge`` tables that are absent from the raw schema or hold no rows.

    Asked under the source's lock and after any pending package is loaded, so it stays true until
    this run's load: only this source's runs write its tables. (A table holding only the rows of
    an unfinished load is not empty: those rows must still be replaced by key.) A table another
    session holds locked (``LOCK TABLE``, ``ALTER``) is not waited for: it counts as not empty,
    so its load is a merge as before.
    """
    candidates = merge_tables(config)
    if not candidates:
        return frozenset()
    naming = dlt.Schema(config.name).naming  # the names dlt gives the tables
    empty = set()
    with warehouse.connect(autocommit=True) as conn:
        for table in candidates:
            name = sql.Identifier(settings.raw_schema, naming.normalize_table_identifier(table))
            (exists,) = conn.execute(  # type: ignore[misc]
                "select to_regclass(%s) is not null", (name.as_string(conn),)
            ).fetchone()
            if not exists:
                empty.add(table)
                continue
            try:
                with conn.transaction():
                    # NOWAIT: a lock held elsewhere fails at once instead of queueing behind it.
                    conn.execute(sql.SQL("lock table {} in access share mode nowait").format(name))
                    query = sql.SQL("select not exists (select from {})").format(name)
                    (is_empty,) = conn.execute(query).fetchone()  # type: ignore[misc]
            except psycopg.errors.LockNotAvailable:
                logger.info(
                    "Source %s: table %s is locked by another session; its load is a merge",
                    config.name,
                    table,
                )
                continue
            if is_empty:
                empty.add(table)
    return frozenset(empty)


def _finish_pending(
    pipeline: dlt.Pipeline,
    name: str,
    settings: Settings,
    warehouse: Warehouse,
    result: IngestResult,
) -> dlt.Pipeline:
    """Load what an earlier run left pending, or discard it so its data is extracted again.

    Returns the pipeline to go on with (a new one when the old working directory was beyond
    dlt's repair).
    """
    try:
        packages = [
            *pipeline.list_normalized_load_packages(),
            *pipeline.list_extracted_load_packages(),
        ]
        interrupted = _interrupted_loads(pipeline)
        incomplete = None
    except FileNotFoundError as exc:
        # A kill while dlt was making its storage folders (found by the crash test: the
        # normalized/ folder of a new pipeline missing): nothing there can be finished.
        packages, interrupted, incomplete = [], [], exc
    if incomplete is not None:
        cause = f"its working directory is incomplete ({incomplete.filename} is missing)"
    elif interrupted:
        # dlt records that a job's data committed with a marker file written just after the
        # commit; a kill between the two makes a resumed load run that job again and load its
        # rows twice (into a merge's staging table, which the load's `deduplicated` hint then
        # trusts). Which started job is in that window cannot be told, so such packages start
        # over from the source: a re-extract costs time, never duplicates. (The crash test
        # passes without this too: the window is too narrow for its kills to hit.)
        cause = f"its load was interrupted after job(s) {', '.join(interrupted)} had started"
    else:
        logger.warning("Source %s: finishing a load left pending by an earlier run", name)
        try:
            pipeline.normalize()
            pipeline.load()
        except Exception as exc:  # a step failure, or a half-moved package dlt trips over
            cause = redact(str(_root_cause_exc(exc)))
            # An unreachable warehouse is no reason to discard anything: keep the package for
            # the next attempt (WarehouseError is retryable).
            warehouse.connect().close()
        else:
            if not _has_pending(pipeline):
                result.recovered_pending = True
                return pipeline
            # Found by the crash test: a kill after dlt committed the extracted package but
            # before it saved the source's schema. dlt's normalize() then returns without doing
            # anything (no schema, "nothing was extracted"), and the package would load later,
            # beside this run's own, into a table this run took for empty.
            cause = "dlt's normalize and load left it pending (no schema was saved with it)"
    try:
        if incomplete is not None:
            raise incomplete  # no package to abort: straight to the remedy below
        # dlt's own discard: deletes the pending packages (an aborted partial load is recorded
        # as aborted) and rewinds local state and schemas to before the first of them, so the
        # incremental cursors and file fingerprints ask the source for that data again.
        pipeline.abort_packages()
        how = "aborted with dlt's abort_packages()"
    except Exception as exc:  # the working directory itself is broken
        logger.warning("Source %s: abort_packages() failed too (%s)", name, redact(str(exc)))
        # dlt's remedy for a local state it cannot restore: drop it and take state and schemas
        # from the destination (those of the last completed load).
        try:
            pipeline.drop()
            pipeline = make_pipeline(name, settings, warehouse)
            pipeline.sync_destination()
        except Exception as drop_exc:
            raise SourceError(
                redact(
                    f"Source {name}: a load left pending by an earlier run can neither be "
                    f"completed ({cause}) nor discarded ({exc}; then {drop_exc}). Delete "
                    f"{settings.resolved_data_dir / 'dlt' / f'ingest_{name}'} and run again: "
                    "the state of the last completed load is taken from the warehouse."
                )
            ) from None
        how = "dropped with the local pipeline state, restored from the warehouse"
    logger.warning(
        "Source %s: discarded load package(s) %s left by an earlier run, which could not be "
        "completed (%s); %s. Their data is extracted again from the source now.",
        name,
        ", ".join(packages) or "(unnamed)",
        cause,
        how,
    )
    result.discarded_packages = packages
    return pipeline


def _has_pending(pipeline: dlt.Pipeline) -> bool:
    """Whether the pipeline holds packages not yet loaded (or storage too broken to tell)."""
    try:
        return bool(pipeline.has_pending_data)
    except FileNotFoundError:  # storage folders missing (see _finish_pending)
        return True


def _interrupted_loads(pipeline: dlt.Pipeline) -> list[str]:
    """Jobs of pending normalized packages that a killed load had started (and not finished:
    dlt moves a job to ``completed_jobs`` once its data is in, so those are never redone)."""
    jobs = []
    for load_id in pipeline.list_normalized_load_packages():
        try:
            info = pipeline.get_load_package_info(load_id)
        except Exception:  # unreadable package: finishing it fails and discards it anyway
            continue
        jobs += [job.job_file_info.job_id() for job in info.jobs.get("started_jobs", [])]
    return jobs


def _source_error(name: str, exc: PipelineStepFailed) -> SourceError:
    """A SourceError carrying the root cause; retryable when the root cause is transient."""
    cause = _root_cause_exc(exc)
    # The one exit of every source's errors (web included): secrets are masked here.
    error = SourceError(redact(f"Source {name}: {cause}"))
    # Our own errors say whether they are retryable; is_transient judges the rest.
    error.retryable = is_transient(cause)
    return error


def _root_cause_exc(exc: BaseException) -> BaseException:
    """The innermost error of a dlt step failure, or the first of our own on the way."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
        if isinstance(seen, SourceError):
            return seen
    return seen
