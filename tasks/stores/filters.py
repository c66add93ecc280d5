"""The project's metadata filter syntax, validated once and translated per store.

A filter is a mapping of metadata keys to conditions, combined with AND::

    {"category": "kitchen",                      # equality
     "brand": {"$in": ["Alder & Finch", "Kettle"]},
     "price": {"$gte": 20, "$lt": 100},          # numeric ranges
     "updated_at": {"$gte": "2026-01-01"}}       # ISO dates compare as text

This is the subset of Pinecone's filter language both stores support. Keys are never
interpolated into SQL; they are validated here and bound as parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tasks.errors import VectorStoreError

OPERATORS = {"$eq", "$in", "$gt", "$gte", "$lt", "$lte"}
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    """One ``key <op> value`` term."""

    key: str
    op: str
    value: Scalar | list[Scalar]


def parse_filter(
    raw: dict[str, Any] | None, allowed_keys: set[str] | None = None
) -> list[Condition]:
    """Validate a filter and flatten it into conditions.

    Raises:
        VectorStoreError: unknown key or operator, or a value of the wrong shape.
    """
    if not raw:
        return []
    if not isinstance(raw, dict):
        raise VectorStoreError("A filter must be an object of {key: condition}.")
    conditions: list[Condition] = []
    for key, spec in raw.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise VectorStoreError(f"Filter key {key!r} is not a valid metadata name.")
        if allowed_keys is not None and key not in allowed_keys:
            raise VectorStoreError(
                f"Cannot filter on {key!r}: filterable keys are {sorted(allowed_keys)}."
            )
        terms = spec if isinstance(spec, dict) else {"$eq": spec}
        if not terms:
            raise VectorStoreError(f"Filter on {key!r} has no condition.")
        for op, value in terms.items():
            if op not in OPERATORS:
                raise VectorStoreError(
                    f"Unknown filter operator {op!r} on {key!r}; use one of {sorted(OPERATORS)}."
                )
            _check_value(key, op, value)
            conditions.append(Condition(key, op, value))
    return conditions


def _check_value(key: str, op: str, value: Any) -> None:
    if op == "$in":
        if not isinstance(value, list) or not value:
            raise VectorStoreError(f"`$in` on {key!r} needs a non-empty list.")
        if not all(isinstance(v, str | int | float | bool) for v in value):
            raise VectorStoreError(f"`$in` on {key!r} accepts only strings, numbers, booleans.")
        return
    if op in {"$gt", "$gte", "$lt", "$lte"}:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise VectorStoreError(f"`{op}` on {key!r} needs a number or an ISO date string.")
        return
    if not isinstance(value, str | int | float | bool):
        raise VectorStoreError(f"Equality on {key!r} needs a string, number or boolean.")
