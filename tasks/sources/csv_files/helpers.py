"""Reading CSV files as streams of Arrow record batches (a file is never read into memory whole).

Every column is read as text (no type guessing that could break on a later block), then the
declared columns are cast. A batch that does not cast as a whole is checked row by row with dlt's
own coercion so the contract (see :mod:`tasks.sources.contracts`) can name the bad row.
"""

from __future__ import annotations

import csv
import glob
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.errors import SourceError
from tasks.sources.config import Contract, CsvResource
from tasks.sources.contracts import ContractViolation, check_row, rejected_row

#: Bytes per block parsed by Arrow (one block ≈ one batch handed to dlt).
BLOCK_SIZE = 4 << 20

ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "decimal": pa.decimal128(38, 9),
}


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


class _Prefixed(io.RawIOBase):
    """A binary stream: ``prefix`` bytes, then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
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
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


def read_header(stream: IO[bytes], spec: CsvResource, origin: str) -> tuple[list[str], IO[bytes]]:
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
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if data_type == "timestamp":
        try:  # naive timestamps are UTC, as dlt assumes
            naive = pc.cast(array, pa.timestamp("us"))
            return pc.assume_timezone(naive, "UTC")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def apply_contract(
    batch: pa.Table,
    columns: dict[str, str],
    mode: Contract,
    table: str,
    origin: str,
    first_row: int,
) -> BatchResult:
    """Cast the declared columns of ``batch``; divert or fail rows that do not fit.

    Raises:
        ContractViolation: a value does not fit and ``mode`` is not quarantine.
    """
    declared = {c: t for c, t in columns.items() if c in batch.column_names}
    casts: dict[str, pa.ChunkedArray] = {}
    slow: list[str] = []
    for name, data_type in declared.items():
        cast = _cast_column(batch.column(name), data_type)
        if cast is None:
            slow.append(name)
        else:
            casts[name] = cast
    if not slow:
        for name, cast in casts.items():
            batch = batch.set_column(batch.schema.get_field_index(name), name, cast)
        return BatchResult(batch)

    # Row by row for this batch only, with dlt's coercion (what dlt itself would accept).
    rows = batch.to_pylist()
    keep: list[bool] = []
    rejected: list[dict[str, Any]] = []
    slow_types = {c: declared[c] for c in slow}
    for offset, row in enumerate(rows):
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
    return BatchResult(good, rejected)


def read_batches(
    stream: IO[bytes], spec: CsvResource, origin: str, mode: Contract
) -> Iterator[BatchResult]:
    """Parse ``stream`` (bytes) as CSV per ``spec`` and yield contract-checked batches.

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
            yield apply_contract(batch, spec.columns, mode, spec.table, origin, rows + 1)
            rows += record_batch.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc)
        if "UTF8" in message or isinstance(exc, UnicodeDecodeError):
            raise SourceError(
                f"{origin}: bytes not valid {spec.encoding} after data row {rows} ({message}). "
                "Set `encoding` for this resource (e.g. latin-1) or fix the file."
            ) from None
        raise SourceError(
            f"{origin}: malformed CSV after data row {rows} ({message}). The file may be "
            "truncated, or a row has the wrong number of cells or an unterminated quote."
        ) from None
    if rows == 0:
        raise SourceError(
            f"{origin} has a header but no data rows; nothing was loaded. Check the file, or "
            "remove the resource from the sources file."
        )
