"""Constants of the CSV source."""

from __future__ import annotations

import pyarrow as pa

#: Bytes per block parsed by Arrow; one block is one item handed to dlt. The streaming reader's
#: memory grows with it (it reads ahead: ~60 MB at 1 MB blocks, ~190 MB at 4 MB) while dlt's
#: fixed work per item (~2 ms) shrinks; 2 MB balances the two (bench/bench_ingest.py).
BLOCK_SIZE = 2 << 20

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
