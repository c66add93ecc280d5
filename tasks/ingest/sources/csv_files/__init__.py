"""dlt source for CSV files (local paths, globs, http(s) URLs) declared in the sources file.

Rows travel as Arrow tables (dlt's fast path: no per-row normalization). With ``incremental``
(the default) each file's fingerprint is kept in the source's dlt state: local files by
modification time + size, URLs by ETag/Last-Modified (sent back as conditional request headers).
An unchanged file is not read again. The state is committed with the load, so a failed or killed
load re-reads the file next time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
from dlt.sources import DltResource

from tasks.errors import SourceError
from tasks.ingest.sources.config import CsvResource, CsvSourceConfig
from tasks.ingest.sources.contracts import dlt_contract
from tasks.ingest.sources.csv_files.helpers import (
    load_file_format,
    local_batches,
    resolve_paths,
    url_batches,
    with_merge_hints,
)
from tasks.ingest.sources.http import SafeSession


def csv_resource(
    spec: CsvResource, config: CsvSourceConfig, base_dir: Path, target_empty: bool = False
) -> DltResource:
    """One table from one or more CSV files, typed by the declared column hints.

    ``target_empty`` says the table holds no rows in the warehouse: a ``merge`` load with unique
    keys is then written as an append (see :func:`with_merge_hints`).
    """
    if not spec.is_url:
        resolve_paths(spec.path, base_dir)  # fail before any load when nothing matches

    def batches() -> Iterator[Any]:
        # Source state, not resource state: dlt resets a `replace` resource's state every run.
        tables = dlt.current.source_state().setdefault("csv_files", {})
        files: dict[str, Any] = tables.setdefault(spec.table, {})
        if spec.is_url:
            session = SafeSession(config.http, allow_private=config.allow_private_addresses)
            with session:
                parsed = url_batches(spec, config, session, files)
                yield from with_merge_hints(parsed, spec, target_empty)
        else:
            parsed = local_batches(spec, config, base_dir, files)
            yield from with_merge_hints(parsed, spec, target_empty)

    return dlt.resource(
        batches,
        name=spec.table,
        primary_key=spec.primary_key or (),
        write_disposition=spec.write_disposition,
        columns={name: {"data_type": kind} for name, kind in spec.columns.items()},
        schema_contract=dlt_contract(config.contract),
        file_format=load_file_format(),
    )


@dlt.source(max_table_nesting=0)
def csv_files(
    config: CsvSourceConfig, base_dir: Path, empty_tables: frozenset[str] = frozenset()
) -> list[DltResource]:
    """All CSV resources of one source declared in the sources file.

    ``empty_tables``: the tables that hold no rows in the warehouse (see :func:`csv_resource`).
    """
    names = [spec.table for spec in config.resources]
    if len(names) != len(set(names)):
        raise SourceError(f"Source {config.name} declares table(s) twice: {names}")
    return [
        csv_resource(spec, config, base_dir, spec.table in empty_tables)
        for spec in config.resources
    ]
