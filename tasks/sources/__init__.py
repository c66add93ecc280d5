"""Sources: the sources file's models and one dlt source package per kind."""

from __future__ import annotations

from pathlib import Path

from dlt.sources import DltSource

from tasks.sources.config import CsvSourceConfig, SourcesFile, load_sources_file


def build_source(config: CsvSourceConfig, base_dir: Path) -> DltSource:
    """The dlt source for one entry of the sources file."""
    from tasks.sources.csv_files import csv_files

    return csv_files.with_args(name=config.name)(config, base_dir)  # type: ignore[no-any-return]


__all__ = ["SourcesFile", "build_source", "load_sources_file"]
