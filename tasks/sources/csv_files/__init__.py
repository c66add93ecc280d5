"""dlt source for CSV files (local paths, globs, http(s) URLs) declared in the sources file.

Rows travel as Arrow tables (dlt's fast path: no per-row normalization). With ``incremental``
(the default) each file's fingerprint is kept in the resource's dlt state: local files by
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
from tasks.sources.config import CsvResource, CsvSourceConfig
from tasks.sources.contracts import dlt_contract, mark_rejected
from tasks.sources.csv_files.helpers import read_batches, resolve_paths
from tasks.sources.http import SafeSession


def _local_batches(
    spec: CsvResource, config: CsvSourceConfig, base_dir: Path, files: dict[str, Any]
) -> Iterator[Any]:
    for path in resolve_paths(spec.path, base_dir):
        stat = path.stat()
        fingerprint = {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
        key = str(path)
        if spec.incremental and files.get(key) == fingerprint:
            continue
        with path.open("rb") as handle:
            yield from _emit(read_batches(handle, spec, str(path), config.contract), spec)
        files[key] = fingerprint


def _url_batches(
    spec: CsvResource, config: CsvSourceConfig, session: SafeSession, files: dict[str, Any]
) -> Iterator[Any]:
    url = spec.path
    known = files.get(url) or {}
    headers = {}
    if spec.incremental and known.get("etag"):
        headers["If-None-Match"] = known["etag"]
    if spec.incremental and known.get("last_modified"):
        headers["If-Modified-Since"] = known["last_modified"]
    with session.get(url, headers=headers, stream=True) as response:
        if response.status_code == 304:
            return
        fingerprint = {
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
        }
        if spec.incremental and known and fingerprint == known and any(fingerprint.values()):
            return  # the server ignored the conditional request but the validators match
        response.raw.decode_content = True
        yield from _emit(read_batches(response.raw, spec, url, config.contract), spec)
    files[url] = fingerprint


def _emit(batches: Iterator[Any], spec: CsvResource) -> Iterator[Any]:
    for result in batches:
        if result.table.num_rows:
            yield result.table
        if result.rejected:
            yield mark_rejected(result.rejected, spec.table)


def csv_resource(spec: CsvResource, config: CsvSourceConfig, base_dir: Path) -> DltResource:
    """One table from one or more CSV files, typed by the declared column hints."""
    if not spec.is_url:
        resolve_paths(spec.path, base_dir)  # fail before any load when nothing matches

    def batches() -> Iterator[Any]:
        files: dict[str, Any] = dlt.current.resource_state().setdefault("files", {})
        if spec.is_url:
            session = SafeSession(config.http, allow_private=config.allow_private_addresses)
            with session:
                yield from _url_batches(spec, config, session, files)
        else:
            yield from _local_batches(spec, config, base_dir, files)

    return dlt.resource(
        batches,
        name=spec.table,
        primary_key=spec.primary_key or (),
        write_disposition=spec.write_disposition,
        columns={name: {"data_type": kind} for name, kind in spec.columns.items()},
        schema_contract=dlt_contract(config.contract),
        file_format="csv",
    )


@dlt.source(max_table_nesting=0)
def csv_files(config: CsvSourceConfig, base_dir: Path) -> list[DltResource]:
    """All CSV resources of one source declared in the sources file."""
    names = [spec.table for spec in config.resources]
    if len(names) != len(set(names)):
        raise SourceError(f"Source {config.name} declares table(s) twice: {names}")
    return [csv_resource(spec, config, base_dir) for spec in config.resources]
