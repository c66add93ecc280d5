"""Reading CSV files as streams of Arrow record batches (a file is never read into memory whole).

Every column is read as text (no type guessing that could break on a later block), then the
declared columns are cast. A batch that does not cast as a whole is checked row by row with dlt's
own coercion so the contract (see :mod:`tasks.ingest.sources.contracts`) can name the bad row.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from dlt.common.schema.typing import MERGE_DISPOSITION_HINTS, TWriteDispositionConfig
from dlt.extract.hints import TResourceHints

from tasks.errors import SourceError
from tasks.ingest.sources.config import Contract, CsvResource, CsvSourceConfig
from tasks.ingest.sources.contracts import ContractViolation, check_row, mark_rejected, rejected_row
from tasks.ingest.sources.csv_files.settings import ARROW_TYPES, BLOCK_SIZE
from tasks.ingest.sources.http import SafeSession

logger = logging.getLogger(__name__)


def resolve_paths(pattern: str, base_dir: Path) -> list[Path]:
    """Files matching ``pattern`` (a path or glob, relative to ``base_dir``), sorted."""
    full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
    paths = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file())
    if not paths:
        raise SourceError(
            f"No CSV file matches {pattern!r} (looked in {base_dir}). Check the `path` of this "
            "resource in the sources file."
        )
    return paths


class ByteStream(Protocol):
    """What the reader needs of a binary input: a file, a download (urllib3's response) or the
    wrappers below (``io.RawIOBase.read`` may return ``None``, for non-blocking streams only)."""

    def read(self, size: int = ..., /) -> bytes | None: ...


class _Prefixed(io.RawIOBase):
    """A binary stream: ``prefix`` bytes, then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: ByteStream) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(view)) or b""
        view[: len(data)] = data
        return len(data)


class _Recording(io.RawIOBase):
    """A binary stream that keeps a copy of what was read (in memory up to 8 MB, then in a
    temporary file), so a failed parse of a download can be replayed to locate the bad row."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._copy = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed by close())

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(memoryview(buffer))) or b""
        memoryview(buffer)[: len(data)] = data
        self._copy.write(data)
        return len(data)

    def replay(self) -> IO[bytes]:
        """The bytes read so far, from the start."""
        self._copy.seek(0)
        return self._copy

    def close(self) -> None:
        self._copy.close()
        super().close()


@dataclass
class BadRow:
    """Where the first row Arrow could not read is (1-based rows and lines, 0-based bytes)."""

    data_row: int
    line: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"data row {self.data_row} (line {self.line}, byte offset {self.offset})"


def locate_bad_row(stream: IO[bytes], spec: CsvResource, width: int) -> BadRow | None:
    """The first data row of ``stream`` that is malformed or not valid in ``spec.encoding``.

    Arrow's streaming reader reports neither the row nor the offset of a parse or decoding error
    (it parses whole blocks, ahead of the rows handed out), so after a failure the bytes are read
    again with the standard library's ``csv`` module, line by line, keeping count. Returns
    ``None`` when nothing is found (e.g. a row longer than Arrow's block) or the encoding is not
    ASCII-compatible (lines cannot be split on the ``\n`` byte).
    """
    if "\n".encode(spec.encoding, errors="replace") != b"\n":
        return None
    where = {"line": 0, "offset": 0}

    def lines() -> Iterator[str]:
        for raw in stream:
            text = raw.decode(spec.encoding)  # raises on the line with the bad bytes
            where["line"] += 1
            where["offset"] += len(raw)
            yield text

    reader = csv.reader(lines(), delimiter=spec.delimiter, quotechar=spec.quote_char, strict=True)
    skip = spec.skip_rows + (1 if spec.header else 0)
    data_row = 0
    while True:
        line, offset = where["line"] + 1, where["offset"]
        try:
            record = next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            return BadRow(data_row + 1, line, offset, f"bytes not valid {spec.encoding}: {exc}")
        except csv.Error as exc:
            return BadRow(data_row + 1, line, offset, str(exc))
        if skip:
            skip -= 1
            continue
        if not record:
            continue  # an empty line: Arrow skips it too
        data_row += 1
        if len(record) != width:
            return BadRow(data_row, line, offset, f"expected {width} cells, got {len(record)}")


def read_header(stream: ByteStream, spec: CsvResource, origin: str) -> tuple[list[str], ByteStream]:
    """The header's column names and a stream positioned at the start again.

    Raises:
        SourceError: the file is empty or its header is not valid in the declared encoding.
    """
    if spec.column_names is not None and not spec.header:
        return list(spec.column_names), stream
    head = b""
    # Enough lines for skip_rows + header; quoted newlines in a header are not supported.
    while head.count(b"\n") <= spec.skip_rows:
        chunk = stream.read(64 << 10)
        if not chunk:
            break
        head += chunk
    rest = _Prefixed(head, stream)
    if not head.strip():
        raise SourceError(f"{origin} is empty: expected a header row.")
    lines = head.split(b"\n")
    if len(lines) <= spec.skip_rows:
        raise SourceError(f"{origin}: fewer than skip_rows={spec.skip_rows} lines.")
    try:
        text = lines[spec.skip_rows].decode(spec.encoding).rstrip("\r")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{origin}, line {spec.skip_rows + 1}: header bytes not valid {spec.encoding} "
            f"({exc.reason}). Set `encoding` for this resource or fix the file."
        ) from None
    names = next(csv.reader([text], delimiter=spec.delimiter, quotechar=spec.quote_char), [])
    names = list(spec.column_names) if spec.column_names is not None else names
    if not names or not any(n.strip() for n in names):
        raise SourceError(f"{origin}: the header row is empty.")
    if len(set(names)) != len(names):
        raise SourceError(f"{origin}: duplicate column names in header {names}.")
    return names, io.BufferedReader(rest, buffer_size=1 << 20)


@dataclass
class BatchResult:
    """One batch after the contract: good rows as Arrow, rejected rows as dicts."""

    table: pa.Table
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _cast_column(array: pa.ChunkedArray, data_type: str) -> pa.ChunkedArray | None:
    """``array`` cast to the declared type, or ``None`` when a value does not cast."""
    target = ARROW_TYPES.get(data_type)
    if target is None:
        return array
    casts: list[Callable[[], pa.ChunkedArray]] = [lambda: pc.cast(array, target)]
    if data_type == "timestamp":
        # Text without a zone offset (the common case) is UTC, as dlt assumes: parse it naive and
        # label it UTC. Try that first: a failed cast costs ~10 ms per batch (building the error).
        casts.insert(0, lambda: pc.cast(array, pa.timestamp("us")).cast(target))
    for cast in casts:
        try:
            return cast()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def apply_contract(
    batch: pa.Table,
    columns: Mapping[str, str],
    mode: Contract,
    table: str,
    origin: str,
    first_row: int,
    required: tuple[str, ...] = (),
) -> BatchResult:
    """Cast the declared columns of ``batch``; divert or fail rows that do not fit.

    ``required`` (the primary key) must not be empty: such rows break the contract too. A batch
    where everything casts and no key is empty stays in Arrow (the fast path).

    Raises:
        ContractViolation: a row does not fit and ``mode`` is not quarantine; the message names
            the file, data row, column and value.
    """
    missing = [c for c in required if c not in batch.column_names]
    if missing:
        raise ContractViolation(f"{origin}: primary key column(s) {missing} not in the header.")
    declared = {c: t for c, t in columns.items() if c in batch.column_names}
    casts: dict[str, pa.ChunkedArray] = {}
    slow: list[str] = []
    for name, data_type in declared.items():
        cast = _cast_column(batch.column(name), data_type)
        if cast is None:
            slow.append(name)
        else:
            casts[name] = cast
    empty_key = any(batch.column(c).null_count for c in required)
    if not slow and not empty_key:
        for name, cast in casts.items():
            batch = batch.set_column(batch.schema.get_field_index(name), name, cast)
        return BatchResult(_not_null(batch, required))

    # Row by row for this batch only, with dlt's coercion (what dlt itself would accept).
    keep: list[bool] = []
    rejected: list[dict[str, Any]] = []
    slow_types = {c: declared[c] for c in slow}
    for offset, row in enumerate(batch.to_pylist()):
        if any(row.get(c) is None for c in required):
            reason: str | None = f"primary key {list(required)} is empty"
        else:
            reason = check_row(row, slow_types)
        if reason is None:
            keep.append(True)
            continue
        where = f"{origin}, data row {first_row + offset}"
        if mode != "quarantine":
            raise ContractViolation(
                f"Table {table} ({where}): {reason} (contract `{mode}`). Fix the data, correct "
                f"the column type hint, or set `contract: quarantine` to divert such rows to "
                f"{table}__rejected."
            )
        keep.append(False)
        rejected.append(rejected_row(row, reason, where))
    good = batch.filter(pa.array(keep, pa.bool_()))
    for name, data_type in declared.items():
        cast = _cast_column(good.column(name), data_type)
        if cast is None:  # values dlt coerces but Arrow's cast does not: convert in Python
            from dlt.common.data_types.type_helpers import coerce_value

            values = [
                None if v is None else coerce_value(data_type, "text", v)  # type: ignore[arg-type]
                for v in good.column(name).to_pylist()
            ]
            cast = pa.chunked_array([pa.array(values, ARROW_TYPES[data_type])])
        good = good.set_column(good.schema.get_field_index(name), name, cast)
    return BatchResult(_not_null(good, required), rejected)


def _not_null(batch: pa.Table, required: tuple[str, ...]) -> pa.Table:
    """Mark key columns not-null in the Arrow schema (as dlt's hints say; avoids a warning)."""
    if not required:
        return batch
    fields = [f.with_nullable(False) if f.name in required else f for f in batch.schema]
    return batch.cast(pa.schema(fields))


def _reopener(path: Path) -> Callable[[], IO[bytes]]:
    """Opens ``path`` again (binary), to replay it after a parse error."""
    return lambda: path.open("rb")


def read_batches(
    stream: ByteStream,
    spec: CsvResource,
    origin: str,
    mode: Contract,
    replay: Callable[[], IO[bytes]] | None = None,
) -> Iterator[BatchResult]:
    """Parse ``stream`` (bytes) as CSV per ``spec`` and yield contract-checked batches.

    ``replay`` gives the same bytes again from the start: on a parse or encoding error they are
    read again to name the first bad data row and its byte offset (:func:`locate_bad_row`).

    Raises:
        SourceError: malformed CSV (wrong cell count, unterminated quote), bytes not valid in the
            declared encoding, or no data rows; the message names the file and what to do.
    """
    names, body = read_header(stream, spec, origin)
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=spec.skip_rows + (1 if spec.header else 0),
        encoding=spec.encoding,
        block_size=BLOCK_SIZE,
    )
    parse_options = pacsv.ParseOptions(
        delimiter=spec.delimiter, quote_char=spec.quote_char, newlines_in_values=True
    )
    convert_options = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    required = key_columns(spec)
    rows = 0
    try:
        reader = pacsv.open_csv(
            body,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
        for record_batch in reader:
            if record_batch.num_rows == 0:
                continue
            batch = pa.Table.from_batches([record_batch])
            yield apply_contract(batch, spec.columns, mode, spec.table, origin, rows + 1, required)
            rows += record_batch.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc)
        bad: BadRow | None = None
        if replay is not None:
            with replay() as again:
                bad = locate_bad_row(again, spec, len(names))
        # Arrow read whole blocks ahead: without a replay only "after the rows handed out" is
        # known.
        where = str(bad) if bad else f"after data row {rows}"
        detail = f"{bad.reason}; {message}" if bad else message
        if "UTF8" in message or isinstance(exc, UnicodeDecodeError):
            raise SourceError(
                f"{origin}: bytes not valid {spec.encoding} in {where} ({detail}). "
                "Set `encoding` for this resource (e.g. latin-1) or fix the file."
            ) from None
        raise SourceError(
            f"{origin}: malformed CSV in {where} ({detail}). The file may be "
            "truncated, or a row has the wrong number of cells or an unterminated quote."
        ) from None
    if rows == 0:
        raise SourceError(
            f"{origin} has a header but no data rows; nothing was loaded. Check the file, or "
            "remove the resource from the sources file."
        )


def key_columns(spec: CsvResource) -> tuple[str, ...]:
    """The resource's primary key columns (empty when it has none)."""
    key = spec.primary_key or ()
    return (key,) if isinstance(key, str) else tuple(key)


def local_batches(
    spec: CsvResource, config: CsvSourceConfig, base_dir: Path, files: dict[str, Any]
) -> Iterator[Any]:
    """Batches of the local files matching ``spec.path`` that changed since their last load.

    A file loaded before that no longer matches is reported and forgotten (re-read if it comes
    back); its rows stay in the table, as merge and append keep rows they are not sent.
    """
    paths = resolve_paths(spec.path, base_dir)
    for gone in sorted(set(files) - {str(path) for path in paths}):
        logger.warning(
            "Table %s: %s was loaded before and is gone; its rows stay in the table. Use "
            "`write_disposition: replace` to make the table mirror the files that exist.",
            spec.table,
            gone,
        )
        del files[gone]
    for path in paths:
        stat = path.stat()
        fingerprint = {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
        if incremental(spec) and files.get(str(path)) == fingerprint:
            continue
        with path.open("rb") as handle:
            batches = read_batches(handle, spec, str(path), config.contract, replay=_reopener(path))
            yield from emit(batches, spec)
        files[str(path)] = fingerprint


def incremental(spec: CsvResource) -> bool:
    """Whether unchanged files are skipped: never with ``replace``, where dlt empties the table
    when a run yields no rows, so every run must read every file."""
    return spec.incremental and spec.write_disposition != "replace"


def url_batches(
    spec: CsvResource, config: CsvSourceConfig, session: SafeSession, files: dict[str, Any]
) -> Iterator[Any]:
    """Batches of the CSV file at ``spec.path`` unless its validators say it is unchanged."""
    url = spec.path
    known = files.get(url) or {}
    headers = {}
    if incremental(spec) and known.get("etag"):
        headers["If-None-Match"] = known["etag"]
    if incremental(spec) and known.get("last_modified"):
        headers["If-Modified-Since"] = known["last_modified"]
    with session.get(url, headers=headers, stream=True) as response:
        if response.status_code == 304:
            return
        fingerprint = {
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
        }
        if incremental(spec) and known and fingerprint == known and any(fingerprint.values()):
            return  # the server ignored the conditional request but the validators match
        response.raw.decode_content = True
        with _Recording(response.raw) as body:
            batches = read_batches(body, spec, url, config.contract, replay=body.replay)
            yield from emit(batches, spec)
    files[url] = fingerprint


def emit(batches: Iterator[BatchResult], spec: CsvResource) -> Iterator[Any]:
    """dlt items from parsed batches: good rows as Arrow tables, rejected rows to
    ``<table>__rejected``."""
    for result in batches:
        if result.table.num_rows:
            yield with_row_ids(result.table)
        if result.rejected:
            yield mark_rejected(result.rejected, spec.table)


def with_row_ids(table: pa.Table) -> pa.Table:
    """Add dlt's ``_dlt_id`` (unique row id) in bulk: a random prefix per batch + row number.

    dlt would otherwise make one random id per row in Python (~20% of the ingest time).
    """
    prefix = pa.scalar(secrets.token_hex(8) + "_")
    numbers = pc.cast(pa.array(np.arange(table.num_rows, dtype=np.int64)), pa.string())
    return table.append_column("_dlt_id", pc.binary_join_element_wise(prefix, numbers, ""))


def with_merge_hints(items: Iterator[Any], spec: CsvResource, target_empty: bool) -> Iterator[Any]:
    """Pass ``items`` through and choose how dlt writes this load of a ``merge`` table.

    What a merge costs depends on two facts, known only when the last batch is read: whether this
    load's keys are unique (checked in Arrow on the key columns alone; the rest of each batch is
    not kept) and whether the table held no rows when the load began (``target_empty``, asked of
    the warehouse by the caller under the source's lock). The table's last batch carries the
    answer as dlt table hints (see BENCHMARKS.md, "Merge ingest", for the figures):

    * unique keys, empty table: dlt's ``append`` (the rows go straight into the table by binary
      ``COPY``, no staging table: with nothing to replace, a merge of unique keys *is* an append);
    * unique keys, rows in the table: dlt's ``delete-insert`` merge with its ``deduplicated``
      option, so dlt skips its de-duplicating sort of the staging table;
    * a duplicate key: dlt's ``delete-insert`` merge de-duplicating as before, logged.

    Every hint is set on every load, so nothing an earlier load chose lingers in the stored
    schema. Other dispositions pass through.
    """
    keys = list(key_columns(spec))
    if spec.write_disposition != "merge" or not keys:
        yield from items
        return
    seen: list[pa.Table] = []
    held: pa.Table | None = None  # each table batch is held back one step: the last gets hints
    for item in items:
        if not isinstance(item, pa.Table):
            yield item  # rejected rows (another table)
            continue
        if held is not None:
            yield held
        seen.append(item.select(keys))
        held = item
    if held is None:
        return
    unique = keys_are_unique(pa.concat_tables(seen))
    yield dlt.mark.with_hints(held, merge_hints(spec.table, unique, target_empty))


def keys_are_unique(keys: pa.Table) -> bool:
    """Whether no row of ``keys`` (the key columns of a load) repeats another."""
    rows: int = keys.num_rows
    if keys.num_columns == 1:  # 3x faster than group_by
        return len(pc.unique(keys.column(0))) == rows
    distinct: int = keys.group_by(keys.column_names).aggregate([]).num_rows
    return distinct == rows


def merge_hints(table: str, unique: bool, target_empty: bool) -> TResourceHints:
    """The dlt hints that write one load of the ``merge`` table ``table`` (see
    :func:`with_merge_hints`)."""
    disposition: TWriteDispositionConfig
    if unique and target_empty:
        logger.info(
            "Table %s: empty and this load's keys are unique: loaded by append (no staging)", table
        )
        disposition = {"disposition": "append"}
    else:
        disposition = {"disposition": "merge", "strategy": "delete-insert"}
        if not unique:
            logger.info(
                "Table %s: this load repeats a key: merged by delete-insert, de-duplicated by dlt",
                table,
            )
    # `deduplicated` is set as the raw table hint: the write_disposition dict drops a False and
    # would leave an earlier run's True in the stored schema.
    return dlt.mark.make_hints(
        write_disposition=disposition,
        additional_table_hints={MERGE_DISPOSITION_HINTS["deduplicated"]: unique},
    )


@cache
def load_file_format() -> Literal["parquet", "csv"]:
    """The load file format for Arrow batches: ``parquet`` when ADBC's PostgreSQL driver is
    installed, else ``csv``.

    With parquet the files written by dlt's extract step are loaded as they are (binary COPY
    through ADBC); with csv dlt's normalize step re-writes them first (text COPY), about a third
    of the ingest time. Without the driver dlt would fall back to INSERT statements for parquet.
    """
    from dlt.destinations._adbc_jobs import has_adbc_driver
    from dlt.destinations.impl.postgres.factory import get_adbc_driver_location

    found, _ = has_adbc_driver(get_adbc_driver_location())
    return "parquet" if found else "csv"
