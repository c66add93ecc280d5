"""dlt source for CSV files declared in the sources file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
from dlt.sources import DltResource

from tasks.sources.config import CsvResource, CsvSourceConfig
from tasks.sources.csv_files.helpers import read_pages, resolve_paths


def csv_resource(spec: CsvResource, base_dir: Path) -> DltResource:
    """One table from one or more CSV files, typed by the declared column hints."""
    paths = resolve_paths(spec.path, base_dir)

    def rows() -> Iterator[list[dict[str, Any]]]:
        for path in paths:
            yield from read_pages(path, delimiter=spec.delimiter, encoding=spec.encoding)

    return dlt.resource(
        rows,
        name=spec.table,
        primary_key=spec.primary_key,
        write_disposition=spec.write_disposition,
        columns={name: {"data_type": kind} for name, kind in spec.columns.items()},
        # A value that does not fit its declared type fails the load instead of landing in a
        # silent variant column (price__v_text).
        schema_contract={"tables": "evolve", "columns": "evolve", "data_type": "freeze"},
    )


@dlt.source(max_table_nesting=0)
def csv_files(config: CsvSourceConfig, base_dir: Path) -> list[DltResource]:
    """All CSV resources of one source declared in the sources file."""
    return [csv_resource(spec, base_dir) for spec in config.resources]
