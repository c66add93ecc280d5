"""Benchmark: upsert 100,000 vectors (384 dims) into the local Pinecone test server.

Reports, for each parallelism level, the upsert requests sent against the minimum the limits
allow (2 MB and 1000 vectors per request) and the throughput. The server runs in its own process
(``python -m tests.fakes.pinecone_server``) so it does not share the client's GIL. Records look
like the indexer's: 500 characters of text, title, url, source, updated_at. Data generation is
not timed; the timed part is ``PineconeStore.upsert`` (float32 conversion, metadata checks,
measured packing, HTTP through the official SDK, server-side parsing and storage).

    .venv/bin/python bench/bench_pinecone_upsert.py [--vectors 100000] [--parallel 1 4 8]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from tasks.stores.base import VectorRecord  # noqa: E402
from tasks.stores.pinecone import (  # noqa: E402
    MAX_REQUEST_BYTES,
    MAX_VECTORS_PER_UPSERT,
    PineconeStore,
    PineconeStoreConfig,
    float32_list,
    stored_metadata,
)

API_KEY = "bench-key"
NS = "bench"


def make_records(start: int, n: int, dim: int, seed: int) -> list[VectorRecord]:
    """``n`` chunk-like records with ids ``start..start+n``."""
    rng = np.random.default_rng(seed + start)
    values = rng.normal(size=(n, dim)).astype(np.float32)
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    words = ["tent", "stove", "lantern", "kettle", "blanket", "trail", "rain", "light"]
    return [
        VectorRecord(
            id=f"product-{start + i}#0",
            document_id=f"product-{start + i}",
            values=values[i].tolist(),
            text=" ".join(words[(start + i + k) % len(words)] for k in range(80))[:500],
            content_hash=f"{start + i:064x}",
            metadata={
                "document_id": f"product-{start + i}",
                "chunk_position": 0,
                "title": f"Product {start + i}",
                "url": f"https://shop.example/p/{start + i}",
                "source": "catalog",
                "updated_at": "2026-11-01",
            },
        )
        for i in range(n)
    ]


def item_bytes(records: list[VectorRecord]) -> tuple[int, int]:
    """JSON bytes of the records as the store sends them (float32) and as float64 would be."""
    f32 = f64 = 0
    for r in records:
        metadata, _ = stored_metadata(r.metadata, r.document_id, r.content_hash, r.text, 40960)
        sent = {"id": r.id, "values": float32_list(r.values), "metadata": metadata}
        f32 += len(orjson.dumps(sent))
        f64 += len(orjson.dumps({"id": r.id, "values": r.values, "metadata": metadata}))
    return f32, f64


def start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    """The test server in a child process; returns it and its control-plane URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.pinecone_server",
            "--api-key",
            API_KEY,
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def run(url: str, parallel: int, n: int, dim: int, per_call: int) -> dict[str, float]:
    """Upsert ``n`` vectors with ``parallel`` requests in flight; returns the figures."""
    store = PineconeStore(
        PineconeStoreConfig(
            api_key=API_KEY,
            index_name=f"bench-p{parallel}",
            controller_host=url,
            create_index=True,
            parallelism=parallel,
        )
    )
    store.ensure_namespace(NS, dim)
    seconds = 0.0
    total_f32 = total_f64 = 0
    for start in range(0, n, per_call):
        records = make_records(start, min(per_call, n - start), dim, seed=1)
        f32, f64 = item_bytes(records)
        total_f32, total_f64 = total_f32 + f32, total_f64 + f64
        began = time.perf_counter()
        store.upsert(NS, records)
        seconds += time.perf_counter() - began
    count = store.count(NS)
    assert count == n, f"server holds {count} vectors, expected {n}"
    sent = store.stats["upsert_calls"]
    store.drop_namespace(NS)
    store.close()
    overhead = len(orjson.dumps({"vectors": [], "namespace": NS}))
    minimum = max(
        math.ceil(n / MAX_VECTORS_PER_UPSERT),
        math.ceil((total_f32 + n - 1) / (MAX_REQUEST_BYTES - overhead)),
    )
    return {
        "parallel": parallel,
        "requests": sent,
        "minimum": minimum,
        "seconds": seconds,
        "vectors_per_s": n / seconds,
        "mb_per_s": total_f32 / seconds / 1e6,
        "bytes_per_vector": total_f32 / n,
        "bytes_per_vector_f64": total_f64 / n,
    }


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--per-call", type=int, default=20_000, help="records per store.upsert call"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 50.0],
        help="network latency the server adds per request (0: loopback only)",
    )
    args = parser.parse_args()
    results = []
    for latency in args.latency_ms:
        proc, url = start_server(latency)
        try:
            for p in args.parallel:
                figures = run(url, p, args.vectors, args.dim, args.per_call)
                results.append({**figures, "latency_ms": latency})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    first = results[0]
    print(
        f"{args.vectors} vectors x {args.dim} dims, {args.per_call} records per upsert call; "
        f"{first['bytes_per_vector']:.0f} JSON bytes per record as sent (float32), "
        f"{first['bytes_per_vector_f64']:.0f} with float64 values"
    )
    print()
    print(
        "| added latency | parallel requests | requests sent | minimum under limits | seconds "
        "| vectors/s | MB/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['latency_ms']:.0f} ms | {r['parallel']} | {r['requests']} | {r['minimum']} | "
            f"{r['seconds']:.1f} | {r['vectors_per_s']:,.0f} | {r['mb_per_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
