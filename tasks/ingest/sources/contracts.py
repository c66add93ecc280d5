"""Schema contracts: what a source does with data that does not fit what it declared.

* ``evolve``: new tables and columns are added. A value that does not fit a *declared* column
  type fails the load (never a silent ``price__v_text`` variant column).
* ``freeze``: as ``evolve``, and the columns are frozen once the table exists: a new column fails
  the load too (dlt's ``freeze`` contract). Messages name the column and the value.
* ``quarantine``: rows with a value that does not fit a declared type are written to
  ``<table>__rejected`` (reason, raw record as JSON, when) instead of the table; nothing is
  dropped silently.

The value check reuses dlt's own coercion, so a row is rejected exactly when dlt could not store
it in the declared type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.data_types.type_helpers import coerce_value, py_type_to_sc_type
from dlt.common.schema.typing import TSchemaContract, TTableSchemaColumns

from tasks.errors import SourceError
from tasks.ingest.sources.config import Contract

REJECTED_SUFFIX = "__rejected"

#: Columns of every ``<table>__rejected`` table.
REJECTED_COLUMNS: TTableSchemaColumns = {
    "reason": {"data_type": "text", "nullable": False},
    "raw_record": {"data_type": "text", "nullable": False},
    "origin": {"data_type": "text", "nullable": True},
    "rejected_at": {"data_type": "timestamp", "nullable": False},
}


class ContractViolation(SourceError):
    """Data broke the source's declared contract (freeze/evolve)."""


def dlt_contract(mode: Contract) -> TSchemaContract:
    """The dlt schema contract for ``mode`` (value checks are done by :func:`check_row`)."""
    if mode == "freeze":
        return {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
    return {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}


def check_row(row: Mapping[str, Any], columns: Mapping[str, str]) -> str | None:
    """Why ``row`` does not fit the declared ``columns`` types, or ``None`` when it does."""
    for name, data_type in columns.items():
        value = row.get(name)
        if value is None:
            continue
        try:
            from_type = py_type_to_sc_type(type(value))
            coerce_value(data_type, from_type, value)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any coercion failure means "does not fit"
            return f"column {name!r}: value {value!r} is not a valid {data_type}"
    return None


def rejected_row(row: Mapping[str, Any], reason: str, origin: str | None) -> dict[str, Any]:
    """The ``__rejected`` table row for a rejected record."""
    return {
        "reason": reason,
        "raw_record": json.dumps(dict(row), default=str, ensure_ascii=False),
        "origin": origin,
        "rejected_at": datetime.now(UTC),
    }


def mark_rejected(rows: list[dict[str, Any]], table: str) -> Any:
    """Route ``rows`` (from :func:`rejected_row`) to ``<table>__rejected`` (append-only)."""
    return dlt.mark.with_hints(
        rows,
        dlt.mark.make_hints(
            table_name=table + REJECTED_SUFFIX,
            write_disposition="append",
            primary_key=[],
            merge_key=[],
            columns=REJECTED_COLUMNS,
        ),
        create_table_variant=True,
    )


def split_rows(
    rows: Iterable[dict[str, Any]],
    columns: Mapping[str, str],
    mode: Contract,
    table: str,
    origin: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``rows`` into (good, rejected) under ``mode``.

    Raises:
        ContractViolation: ``mode`` is not quarantine and a row has a bad value; the message names
            the table, column and value.
    """
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row in rows:
        reason = check_row(row, columns) if columns else None
        if reason is None:
            good.append(row)
        elif mode == "quarantine":
            rejected.append(rejected_row(row, reason, origin))
        else:
            where = f" ({origin})" if origin else ""
            raise ContractViolation(
                f"Table {table}{where}: {reason} (contract `{mode}`). Fix the data, correct the "
                "column type hint, or set `contract: quarantine` to divert such rows to "
                f"{table}{REJECTED_SUFFIX}."
            )
    return good, rejected
