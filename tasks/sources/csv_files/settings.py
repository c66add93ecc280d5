"""Constants of the CSV source."""

from __future__ import annotations

import pyarrow as pa

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
