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


def build_source(config: AnySourceConfig, base_dir: Path) -> DltSource:
    """The dlt source for one entry of the sources file."""
    if isinstance(config, CsvSourceConfig):
        from tasks.ingest.sources.csv_files import csv_files

        return csv_files.with_args(name=config.name)(config, base_dir)
    if isinstance(config, RestApiSourceConfig):
        from tasks.ingest.sources.rest_api import rest_api

        return rest_api(config)
    if isinstance(config, WebSourceConfig):
        from tasks.ingest.sources.web import web_pages

        return web_pages.with_args(name=config.name)(config)
    raise TypeError(f"unknown source kind {config!r}")  # pragma: no cover


__all__ = ["AnySourceConfig", "SourcesFile", "build_source", "load_sources_file"]
