"""Sources: the sources file's models and one dlt source package per kind.

``csv`` (:mod:`tasks.ingest.sources.csv_files`), ``rest_api``
(:mod:`tasks.ingest.sources.rest_api`) and ``web`` (:mod:`tasks.ingest.sources.web`);
docs/sources.md documents every option.
"""

from __future__ import annotations

from pathlib import Path

from dlt.sources import DltSource

from tasks.ingest.sources.config import (
    AnySourceConfig,
    CsvSourceConfig,
    RestApiSourceConfig,
    SourcesFile,
    WebSourceConfig,
    load_sources_file,
)


def build_source(
    config: AnySourceConfig, base_dir: Path, empty_tables: frozenset[str] = frozenset()
) -> DltSource:
    """The dlt source for one entry of the sources file.

    ``empty_tables``: the source's ``merge`` tables that hold no rows in the warehouse; a source
    may write a load into them as an append (the ``csv`` kind does when the load's keys are
    unique, see :func:`tasks.ingest.sources.csv_files.helpers.with_merge_hints`).
    """
    if isinstance(config, CsvSourceConfig):
        from tasks.ingest.sources.csv_files import csv_files

        return csv_files.with_args(name=config.name)(config, base_dir, empty_tables)
    if isinstance(config, RestApiSourceConfig):
        from tasks.ingest.sources.rest_api import rest_api

        return rest_api(config)
    if isinstance(config, WebSourceConfig):
        from tasks.ingest.sources.web import web_pages

        return web_pages.with_args(name=config.name)(config)
    raise TypeError(f"unknown source kind {config!r}")  # pragma: no cover


def merge_tables(config: AnySourceConfig) -> list[str]:
    """The tables of ``config`` whose loads a source may write as an append when the table is
    empty (today the ``csv`` kind's ``merge`` tables; see :func:`build_source`)."""
    if isinstance(config, CsvSourceConfig):
        return [spec.table for spec in config.resources if spec.write_disposition == "merge"]
    return []


__all__ = [
    "AnySourceConfig",
    "SourcesFile",
    "build_source",
    "load_sources_file",
    "merge_tables",
]
