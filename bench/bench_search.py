"""Search service benchmark: 100,000 chunks in pgvector (HNSW), latency under concurrent load.

What it does (figures go to BENCHMARKS.md, "Search service"):

1. Starts the embedded PostgreSQL in ``--data-dir`` and loads ``--rows`` synthetic chunks into
   namespace ``bench`` (the pgvector store's table layout): **synthetic vectors** (384 dims,
   unit length, drawn around 2,000 random cluster centres so neighbourhoods exist as in real
   embeddings) and synthetic text (25 words from a 4,000-word made-up vocabulary plus a unique
   code). Binary COPY, then the HNSW index (m=16, ef_construction=64, as the store creates it)
   and the full-text GIN index (as hybrid search creates it). Build times are reported.
2. Recall@10 of HNSW (ef_search 40, the default, and 100) against exact search on 200 query
   vectors (a data vector plus noise), and the in-process SQL latency of both.
3. Starts the service (``semantic-index serve``) in its own process and a load generator in another
   (``--concurrency`` clients on loopback, ``--seconds`` per scenario) for: vector and hybrid
   with HNSW, then vector and hybrid with exact search (``enable_indexscan = off`` for the
   database, service restarted). Reports p50/p95/p99 of the whole request as the client sees
   it, of retrieval alone (the service's ``Server-Timing: retrieve``; excludes embedding) and
   of query embedding (``Server-Timing: embed``), and requests/s.

    python bench/bench_search.py                       # 100,000 rows (HNSW build: minutes)
    python bench/bench_search.py --rows 20000 --seconds 10
    python bench/bench_search.py --reuse               # keep the loaded table from a last run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import flows  # noqa: E402, F401  (offline defaults)

NAMESPACE = "bench"
DIM = 384
API_KEY = "bench-key"


# --- data -------------------------------------------------------------------------------------


def vocabulary(rng: np.random.Generator, size: int = 4000) -> list[str]:
    """Made-up pronounceable words (``kavoru``, ``tespelin``...)."""
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n)))
    return sorted(words)


def synthetic_rows(rows: int, seed: int = 1) -> tuple[np.ndarray, list[str], list[str]]:
    """Vectors (float32, unit length), texts and codes.

    Each vector is a random cluster centre plus noise of a per-row strength (cosine to its centre
    between about 0.3 and 0.9), so clusters are loose and overlapping rather than a few tight
    balls of near-ties, closer to how sentence embeddings spread.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, len(centres), rows)
    noise = rng.standard_normal((rows, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    strength = rng.uniform(0.5, 3.0, (rows, 1)).astype(np.float32)
    vectors = centres[assign] + strength * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocab = vocabulary(rng)
    picks = rng.integers(0, len(vocab), (rows, 25))
    codes = [f"BX-{i:06d}" for i in range(rows)]
    texts = [f"{' '.join(vocab[j] for j in picks[i])} code {codes[i]}" for i in range(rows)]
    return vectors, texts, codes


def write_manifest(data_dir: Path) -> None:
    """Declare namespace ``bench`` the way a dbt model would (what the service reads)."""
    target = data_dir / "dbt" / "target"
    target.mkdir(parents=True, exist_ok=True)
    node = {
        "resource_type": "model",
        "schema": "analytics",
        "name": NAMESPACE,
        "config": {
            "meta": {
                "embedding": {
                    "id_column": "document_id",
                    "text_columns": ["body"],
                    "metadata_columns": ["category", "price"],
                    "namespace": NAMESPACE,
                }
            }
        },
    }
    (target / "manifest.json").write_text(json.dumps({"nodes": {"model.bench.bench": node}}))


def load(settings: Any, rows: int, reuse: bool) -> dict[str, float]:
    """Create and fill the namespace table and its indexes; returns timings in seconds."""
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from tasks.search.fulltext import FullTextSearch, chunk_text_table
    from tasks.warehouse import get_warehouse

    warehouse = get_warehouse(settings)
    out: dict[str, float] = {}
    with warehouse.connect(autocommit=True) as conn:
        conn.execute("create extension if not exists vector")
        register_vector(conn)
        schema = settings.vector_schema
        table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(NAMESPACE))
        [(count,)] = conn.execute(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relname = %s",
            (schema, NAMESPACE),
        ).fetchall()
        if reuse and count:
            [(have,)] = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchall()
            if have == rows:
                print(f"reusing {have} rows in {schema}.{NAMESPACE}", file=sys.stderr)
                return out
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("drop table if exists {}").format(table))
        # The store's layout (tasks/stores/pgvector.py); the index comes after the load because
        # building it once is much faster than maintaining it row by row.
        conn.execute(
            sql.SQL(
                """
                create table {} (
                    id text primary key, document_id text not null, content_hash text not null,
                    text text not null, metadata jsonb not null default '{{}}',
                    embedding vector({}) not null, written_at timestamptz not null default now()
                )
                """
            ).format(table, sql.Literal(DIM))
        )
        started = time.perf_counter()
        vectors, texts, codes = synthetic_rows(rows)
        out["generate_s"] = time.perf_counter() - started
        categories = ["kitchen", "outdoor", "electronics", "garden", "books", "toys"]
        started = time.perf_counter()
        copy_sql = sql.SQL(
            "copy {} (id, document_id, content_hash, text, metadata, embedding) "
            "from stdin with (format binary)"
        ).format(table)
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(["text", "text", "text", "text", "jsonb", "vector"])
            for i in range(rows):
                meta = {
                    "category": categories[i % len(categories)],
                    "price": round(5 + (i * 7919 % 50000) / 100, 2),
                    "title": f"Synthetic chunk {codes[i]}",
                    "chunk_position": 0,
                }
                copy.write_row((f"doc:{i}#0", f"doc:{i}", "x", texts[i], Jsonb(meta), vectors[i]))
        out["copy_s"] = time.perf_counter() - started
        conn.execute("set maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        conn.execute(
            sql.SQL("create index {} on {} using hnsw (embedding vector_cosine_ops)").format(
                sql.Identifier(f"{NAMESPACE}_embedding_hnsw"), table
            )
        )
        out["hnsw_build_s"] = time.perf_counter() - started
        conn.execute(
            sql.SQL("create index {} on {} (document_id)").format(
                sql.Identifier(f"{NAMESPACE}_document_id"), table
            )
        )
        conn.execute(sql.SQL("analyze {}").format(table))
    started = time.perf_counter()
    fts = FullTextSearch(warehouse, settings.search_fulltext_config)
    fts.ensure_index(chunk_text_table(settings, NAMESPACE))
    fts.close()
    out["gin_build_s"] = time.perf_counter() - started
    return out


# --- recall -----------------------------------------------------------------------------------


def recall(settings: Any, queries: int = 200) -> dict[str, Any]:
    """Recall@10 of HNSW vs exact search, and in-process SQL latency of each."""
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from tasks.warehouse import get_warehouse

    rng = np.random.default_rng(7)
    with get_warehouse(settings).connect(autocommit=True) as conn:
        conn.prepare_threshold = None  # plans per call, as the service's first queries do
        register_vector(conn)
        table = sql.SQL("{}.{}").format(
            sql.Identifier(settings.vector_schema), sql.Identifier(NAMESPACE)
        )
        sample = conn.execute(
            sql.SQL("select embedding from {} order by md5(id) limit %s").format(table),
            (queries,),
        ).fetchall()
        qs = [np.asarray(_as_list(r[0]), dtype=np.float32) for r in sample]
        # A query near a stored chunk: its vector plus noise of norm 0.3 (cosine ~0.96).
        noise = rng.standard_normal((len(qs), DIM)).astype(np.float32)
        noise = 0.3 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        qs = [q + n for q, n in zip(qs, noise, strict=True)]
        qs = [q / np.linalg.norm(q) for q in qs]
        top = sql.SQL("select id from {} order by embedding <=> %s limit 10").format(table)
        plan = conn.execute(sql.SQL("explain ") + top, (qs[0],)).fetchall()
        uses_index = any("hnsw" in str(r[0]) for r in plan)

        def run(setup: list[str]) -> tuple[list[set[str]], list[float]]:
            results, times = [], []
            for q in qs:
                with conn.transaction():
                    for s in setup:
                        conn.execute(s)
                    started = time.perf_counter()
                    ids = {r[0] for r in conn.execute(top, (q,)).fetchall()}
                    times.append((time.perf_counter() - started) * 1000)
                results.append(ids)
            return results, times

        exact, exact_ms = run(["set local enable_indexscan = off"])
        out: dict[str, Any] = {
            "queries": len(qs),
            "plan_uses_hnsw": uses_index,
            "exact": _pcts(exact_ms),
        }
        for ef in (40, 100):
            approx, approx_ms = run([f"set local hnsw.ef_search = {ef}"])
            hits = [len(a & e) / 10 for a, e in zip(approx, exact, strict=True)]
            out[f"hnsw_ef{ef}"] = {"recall@10": round(statistics.mean(hits), 4), **_pcts(approx_ms)}
    return out


def overlap(found: list[list[str]], exact: list[list[str]]) -> float:
    """Mean share of each exact answer list that ``found`` holds (recall against exact)."""
    pairs = zip(found, exact, strict=True)
    return round(statistics.mean(len(set(f) & set(e)) / max(1, len(e)) for f, e in pairs), 4)


def _as_list(value: Any) -> Any:
    return value.to_numpy() if hasattr(value, "to_numpy") else value


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(qs[49], 2), "p95": round(qs[94], 2), "p99": round(qs[98], 2)}


# --- recall on real embeddings ---------------------------------------------------------------


def demo_corpus() -> tuple[list[dict[str, Any]], list[str]]:
    """The demo catalog as chunks (an item's name + description, and each review, as chunks of
    the item) and real queries: the labelled demo queries and every item name."""
    import csv

    root = Path(__file__).resolve().parents[1] / "data" / "demo"
    with (root / "items.csv").open(newline="", encoding="utf-8") as f:
        items = list(csv.DictReader(f))
    with (root / "reviews.csv").open(newline="", encoding="utf-8") as f:
        reviews = list(csv.DictReader(f))
    category = {i["item_id"]: i["category"] for i in items}
    chunks = [
        {
            "document_id": f"item:{i['item_id']}",
            "text": f"{i['name']}\n\n{i['description']}",
            "group": i["category"],
        }
        for i in items
    ]
    chunks += [
        {
            "document_id": f"item:{r['item_id']}",
            "text": f"{r['title']} {r['body']}".strip(),
            "group": category.get(r["item_id"], ""),
        }
        for r in reviews
        if (r["title"] or r["body"]) and r["item_id"] in category
    ]
    labelled = [
        json.loads(line)["query"]
        for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return chunks, labelled + [i["name"] for i in items]


def debian_corpus(
    embedder: Any, pages_per_tree: int = 80
) -> tuple[list[dict[str, Any]], list[str]]:
    """Three real documentation trees Debian ships (git's manual, the Debian FAQ, Jinja's docs),
    at most ``pages_per_tree`` pages each (0: all; in path order: embedding is the cost on 2 cores),
    each page's text chunked by the index's own chunker; queries: the page titles."""
    import lxml.html

    from tasks.index.chunking import ChunkerConfig, chunk_document
    from tests.sources.debian_docs import TREES, fetch_tree

    config = ChunkerConfig(max_tokens=254, overlap_tokens=32)
    chunks: list[dict[str, Any]] = []
    titles: list[str] = []
    for name in ("git-doc", "debian-faq", "python-jinja2-doc"):
        root = fetch_tree(TREES[name])
        for page in sorted(root.rglob("*.html"))[: pages_per_tree or None]:
            tree = lxml.html.fromstring(page.read_bytes())
            for bad in tree.xpath("//script|//style"):
                bad.drop_tree()
            title = " ".join((tree.findtext(".//title") or "").split())
            text = " ".join(tree.text_content().split())
            if not text:
                continue
            doc = f"{name}:{page.relative_to(root)}"
            for piece, _ in chunk_document(text, title, config, embedder.count_tokens):
                chunks.append({"document_id": doc, "text": piece, "group": name})
            if title:
                titles.append(title)
    return chunks, sorted(set(titles))


#: The settings compared with the store's (:func:`tasks.stores.pgvector.scan_settings`):
#: ``before_19`` is what ``PgVectorStore.query`` ran before issue 19 (commit 82da85d^):
#: ef_search at pgvector's default (40) whatever the depth, iterative scans on; ``ef40_plain``
#: is pgvector's defaults alone (no iterative scan), what a store without either would run.
BASELINES: dict[str, dict[str, str]] = {
    "before_19": {"hnsw.ef_search": "40", "hnsw.iterative_scan": "relaxed_order"},
    "ef40_plain": {"hnsw.ef_search": "40", "hnsw.iterative_scan": "off"},
}

#: Other settings measured with ``--scan-candidates`` (through the same baseline path), to see
#: what a filtered chunk page of 10 needs to reach recall 0.98.
CANDIDATES: dict[str, dict[str, str]] = {
    "ef80_relaxed": {"hnsw.ef_search": "80", "hnsw.iterative_scan": "relaxed_order"},
    "ef100_relaxed": {"hnsw.ef_search": "100", "hnsw.iterative_scan": "relaxed_order"},
    "ef40_strict": {"hnsw.ef_search": "40", "hnsw.iterative_scan": "strict_order"},
}

#: The pre-issue-19 query statement (plain LIMIT, hits re-sorted in Python).
BASELINE_SQL = """
    select id, document_id, text, metadata, 1 - (embedding <=> %s) as score
    from {table}
    where {where}
    order by embedding <=> %s
    limit %s
"""

#: The catalog lookup ``PgVectorStore.query`` makes before each query (same SQL), so that the
#: baseline's path does the same round trips as the store's.
DIMENSION_SQL = """
    select format_type(a.atttypid, a.atttypmod)
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %s and c.relname = %s and a.attname = 'embedding'
"""


def baseline_query(
    store: Any,
    namespace: str,
    vector: list[float],
    top_k: int,
    filter_: dict[str, Any] | None,
    scan: dict[str, str],
) -> list[Any]:
    """``PgVectorStore.query`` as it was before issue 19, with ``scan`` as its settings.

    Reproduced here (rather than timing bare SQL) so its latency covers the same full path as
    ``store.query``: filter parsing, the dimension lookup, the SET LOCALs, the statement and
    the hits built in Python. Only the scan settings and the statement differ.
    """
    from psycopg import sql

    from tasks.stores.base import SearchHit
    from tasks.stores.filters import parse_filter
    from tasks.stores.pgvector import where_clause

    conditions = parse_filter(filter_)
    conn = store.conn
    if conn.execute(DIMENSION_SQL, (store.schema, namespace)).fetchone() is None:
        return []
    where, params = where_clause(conditions)
    table = sql.SQL("{}.{}").format(sql.Identifier(store.schema), sql.Identifier(namespace))
    statement = sql.SQL(BASELINE_SQL).format(table=table, where=where)
    query_vector = np.asarray(vector, dtype=np.float32)
    with conn.transaction():
        conn.execute(
            "select " + ", ".join(["set_config(%s, %s, true)"] * len(scan)),
            [x for pair in scan.items() for x in pair],
        )
        rows = conn.execute(statement, (query_vector, *params, query_vector, top_k)).fetchall()
    hits = [
        SearchHit(id=r[0], document_id=r[1], text=r[2], metadata=r[3], score=float(r[4]))
        for r in rows
    ]
    return sorted(hits, key=lambda h: h.score, reverse=True)


def exact_top(
    data: np.ndarray, ids: list[str], query: np.ndarray, k: int, keep: np.ndarray | None
) -> tuple[list[str], float]:
    """The ``k`` nearest ids by cosine, computed in numpy (independently of Postgres), and the
    k-th best similarity (a found row at least that similar counts as a hit: ties)."""
    sims = data @ query
    if keep is not None:
        sims = np.where(keep, sims, -np.inf)
    order = np.argsort(-sims, kind="stable")[:k]
    order = order[np.isfinite(sims[order])]
    return [ids[i] for i in order], float(sims[order[-1]]) if len(order) else -np.inf


def plan_of(conn: Any, statement: Any, args: tuple[Any, ...], scan: dict[str, str]) -> str:
    """Which scan the planner picks for ``statement`` under ``scan``: hnsw, seq or other."""
    with conn.transaction():
        conn.execute(
            "select " + ", ".join(["set_config(%s, %s, true)"] * len(scan)),
            [x for pair in scan.items() for x in pair],
        )
        plan = " ".join(str(r[0]) for r in conn.execute(b"explain " + statement, args))
    if "hnsw" in plan:
        return "hnsw"
    return "seq" if "Seq Scan" in plan else plan[:80]


def real_recall(
    settings: Any,
    corpus: str,
    max_queries: int = 300,
    pages_per_tree: int = 80,
    candidates: bool = False,
) -> dict[str, Any]:
    """Recall@10 against exact search on real embeddings: the store's settings against the
    baselines (:data:`BASELINES`), with and without a filter, in one run.

    Depth 10 is a chunk-mode page of 10; depth 30 is the first fetch of a document-mode page of
    10 (``CANDIDATES_PER_DOCUMENT`` = 3), of which the first 10 are compared. The filter keeps
    the smallest group (a category or a documentation tree). Exact answers come from numpy.
    Latency: the full ``query`` call in-process (psycopg, ``prepare_threshold=None``), p50/p95
    over the queries, the same path for every variant. Each is measured twice: with the plan
    the planner picks (on a small table it may rightly read the filtered rows and sort them,
    which is exact) and with the HNSW path forced (``enable_seqscan = off``, as
    tests/stores/test_pgvector_recall.py does), which is what large namespaces take.
    """
    from psycopg import sql

    from tasks.embedders import get_embedder
    from tasks.stores.base import VectorRecord
    from tasks.stores.filters import parse_filter
    from tasks.stores.pgvector import PgVectorStore, scan_settings, where_clause
    from tasks.warehouse import get_warehouse

    embedder = get_embedder(settings)
    chunks, queries = demo_corpus() if corpus == "demo" else debian_corpus(embedder, pages_per_tree)
    queries = queries[:max_queries]
    started = time.perf_counter()
    vectors = embedder.embed([c["text"] for c in chunks])
    qvecs = [np.asarray(v, dtype=np.float32) for v in embedder.embed(queries)]
    embed_s = time.perf_counter() - started
    namespace = f"recall_{corpus}"
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    store.drop_namespace(namespace)
    store.ensure_namespace(namespace, embedder.dimension)
    records = [
        VectorRecord(
            id=f"{c['document_id']}#{n}",
            document_id=c["document_id"],
            values=v,
            text=c["text"],
            content_hash=str(n),
            metadata={"group": c["group"]},
        )
        for n, (c, v) in enumerate(zip(chunks, vectors, strict=True))
    ]
    for start in range(0, len(records), 500):
        store.upsert(namespace, records[start : start + 500])
    conn = store.conn
    conn.prepare_threshold = None
    table = sql.SQL("{}.{}").format(sql.Identifier(store.schema), sql.Identifier(namespace))
    conn.execute(sql.SQL("analyze {}").format(table))
    data = np.asarray(vectors, dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    unit_q = [q / np.linalg.norm(q) for q in qvecs]
    ids = [r.id for r in records]
    groups: dict[str, int] = {}
    for c in chunks:
        groups[c["group"]] = groups.get(c["group"], 0) + 1
    rare = min(groups, key=lambda g: groups[g])
    version = conn.execute("select extversion from pg_extension where extname = 'vector'")
    out: dict[str, Any] = {
        "pgvector": (version.fetchone() or ("?",))[0],
        "chunks": len(chunks),
        "documents": len({c["document_id"] for c in chunks}),
        "queries": len(qvecs),
        "embed_s": round(embed_s, 1),
        "filter": {"group": rare, "share": round(groups[rare] / len(chunks), 3)},
    }
    variants = {**BASELINES, **(CANDIDATES if candidates else {}), "store": None}
    for label, filter_ in (("unfiltered", None), ("filtered", {"group": rare})):
        keep = None if filter_ is None else np.array([c["group"] == rare for c in chunks])
        exact = [exact_top(data, ids, q, 10, keep) for q in unit_q]
        position = {i: n for n, i in enumerate(ids)}
        where, params = where_clause(parse_filter(filter_))
        probe = sql.SQL(BASELINE_SQL).format(table=table, where=where).as_bytes(conn)
        runs: dict[str, Any] = {}
        for forced in (False, True):
            conn.execute(f"set enable_seqscan = {'off' if forced else 'on'}")
            path = "forced_hnsw" if forced else "planner"
            runs[path] = {}
            for depth in (10, 30):
                args = (qvecs[0], *params, qvecs[0], depth)
                entry: dict[str, Any] = {}
                found: dict[str, list[list[str]]] = {name: [] for name in variants}
                times: dict[str, list[float]] = {name: [] for name in variants}
                # Query by query, the variants in turn (rotating who goes first), so that a
                # change of load or a warm cache favours none of them.
                for n, q in enumerate(qvecs):
                    names = list(variants)
                    for name in names[n % len(names) :] + names[: n % len(names)]:
                        scan = variants[name]
                        t0 = time.perf_counter()
                        if scan is None:
                            hits = store.query(namespace, q.tolist(), depth, filter_)
                        else:
                            hits = baseline_query(
                                store, namespace, q.tolist(), depth, filter_, scan
                            )
                        times[name].append((time.perf_counter() - t0) * 1000)
                        found[name].append([h.id for h in hits][:10])
                for name, scan in variants.items():
                    hit_rates = []
                    for f, (e, kth), q in zip(found[name], exact, unit_q, strict=True):
                        good = sum(
                            1 for i in f if i in e or float(data[position[i]] @ q) >= kth - 1e-6
                        )
                        hit_rates.append(min(good, len(e)) / max(1, len(e)))
                    plan = plan_of(conn, probe, args, scan or scan_settings(depth))
                    entry[name] = {
                        "recall@10": round(statistics.mean(hit_rates), 4),
                        "short": sum(
                            1
                            for f, (e, _) in zip(found[name], exact, strict=True)
                            if len(f) < len(e)
                        ),
                        "plan": plan,
                        **_pcts(times[name]),
                    }
                runs[path][f"depth{depth}"] = entry
        conn.execute("reset enable_seqscan")
        out[label] = runs
    store.drop_namespace(namespace)
    store.close()
    return out


# --- HTTP load --------------------------------------------------------------------------------


def start_service(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """``semantic-index serve`` in its own process; waits until it is ready."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--log-level", "WARNING"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the service exited during startup")
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the service did not become ready")


def _load_worker(
    url: str,
    body: dict[str, Any],
    seconds: float,
    concurrency: int,
    words: list[str],
    out: Any,
) -> None:
    """Load generator (its own process): ``concurrency`` threads sending searches."""
    import httpx

    stop = time.monotonic() + seconds
    lock = threading.Lock()
    samples: list[tuple[float, float, float, int]] = []

    def client(n: int) -> None:
        rng = np.random.default_rng(n)
        with httpx.Client(headers={"X-API-Key": API_KEY}, timeout=60) as http:
            while time.monotonic() < stop:
                query = " ".join(rng.choice(words, 2))
                started = time.perf_counter()
                r = http.post(url, json={"query": query, "top_k": 10, **body})
                total = (time.perf_counter() - started) * 1000
                timing = dict(
                    p.strip().split(";dur=")
                    for p in r.headers.get("server-timing", "").split(",")
                    if ";dur=" in p
                )
                with lock:
                    samples.append(
                        (
                            total,
                            float(timing.get("embed", "nan")),
                            float(timing.get("retrieve", "nan")),
                            r.status_code,
                        )
                    )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    begun, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(
        {
            "samples": samples,
            "elapsed": time.perf_counter() - begun,
            "cpu_s": time.process_time() - cpu,
        }
    )


def _cpu_seconds(procs: list[Any]) -> float:
    """User + system CPU seconds of ``procs`` (psutil processes); gone ones count 0."""
    import psutil

    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _postgres_cpu_seconds() -> float:
    """CPU seconds PostgreSQL has used so far: its live processes plus the backends it reaped.

    Backends come and go with the service's pool, so counting the processes seen at one moment
    would miss them: the postmaster's ``children_*`` times hold the ones that exited. Every
    PostgreSQL server of the machine counts (the benchmark's may be external), so run it on a
    machine where no other one is busy.
    """
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "") != "postgres":
            continue
        try:
            parent = proc.parent()
            if parent is not None and parent.name() == "postgres":
                continue  # a backend: counted with its postmaster below
            family = [proc, *proc.children(recursive=True)]
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += _cpu_seconds(family) + times.children_user + times.children_system
    return total


def load_test(
    port: int,
    mode: str,
    seconds: float,
    concurrency: int,
    service_pid: int | None = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    """One scenario; the generator runs in a second process.

    With ``service_pid``, also the CPU each request cost in the service, in PostgreSQL and in
    the load generator (milliseconds of CPU per answered request): on two cores these three
    share the machine, so this is where a throughput limit comes from.
    """
    import psutil

    service = [psutil.Process(service_pid)] if service_pid else []
    before = (_cpu_seconds(service), _postgres_cpu_seconds())
    words = vocabulary(np.random.default_rng(1))  # same vocabulary as the data (seed 1)
    queue: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(
        target=_load_worker,
        args=(
            f"http://127.0.0.1:{port}/search",
            {"mode": mode, **({"group_by": group_by} if group_by else {})},
            seconds,
            concurrency,
            words,
            queue,
        ),
    )
    proc.start()
    result = queue.get()
    after = (_cpu_seconds(service), _postgres_cpu_seconds())
    proc.join()
    samples = result["samples"]
    ok = [s for s in samples if s[3] == 200]
    answered = max(len(ok), 1)
    report = {
        "mode": mode,
        "group_by": group_by or "the API's default",
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "req_per_s": round(len(ok) / result["elapsed"], 1),
        "total_ms": _pcts([s[0] for s in ok]),
        "retrieve_ms": _pcts([s[2] for s in ok]),
        "embed_ms": _pcts([s[1] for s in ok]),
    }
    if service_pid:
        report["cpu_ms_per_request"] = {
            "service": round((after[0] - before[0]) * 1000 / answered, 2),
            "postgres": round((after[1] - before[1]) * 1000 / answered, 2),
            "load_generator": round(result["cpu_s"] * 1000 / answered, 2),
        }
    return report


def finish(report: dict[str, Any], out: Path | None) -> int:
    """Stamp the end load, print the report as JSON (and write it to ``out``); exit status 0."""
    report["machine"]["load_avg_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text)
    return 0


def main() -> int:
    """Run everything and print the results as JSON."""
    # SIGTERM: unwind (stop the service child, reset the database setting) instead of dying.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bench-search"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--reuse", action="store_true", help="Keep a loaded table of --rows.")
    parser.add_argument("--skip-exact-http", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument(
        "--real-recall-only",
        action="store_true",
        help="Only recall@10 against exact search on real embeddings (the demo catalog and "
        "three Debian documentation trees through the local model), today's pgvector settings "
        "against the store's, with and without a filter; no synthetic load, no HTTP.",
    )
    parser.add_argument(
        "--batching-only",
        action="store_true",
        help="Only the query-batching comparison: vector search, HNSW, one query per model "
        "call (SEARCH_BATCH_MAX=1, no cache; on torch's default threads, then on one) against "
        "the service's defaults, same run.",
    )
    parser.add_argument(
        "--corpora", default="demo,debian", help="With --real-recall-only: demo, debian or both."
    )
    parser.add_argument(
        "--pages-per-tree",
        type=int,
        default=80,
        help="With --real-recall-only on debian: pages per documentation tree (0: all of them).",
    )
    parser.add_argument(
        "--scan-candidates",
        action="store_true",
        help="With --real-recall-only: also measure the scan settings of CANDIDATES.",
    )
    parser.add_argument(
        "--group-by",
        choices=("document", "chunk"),
        default=None,
        help="The requests' group_by (default: none sent, so the API's default, document).",
    )
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    from tasks.settings import Settings
    from tasks.warehouse import get_warehouse

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(data_dir)
    settings = Settings(_env_file=None, data_dir=data_dir)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_start": os.getloadavg(),
        },
        "rows": args.rows,
        "concurrency": args.concurrency,
        "seconds_per_scenario": args.seconds,
    }
    if args.real_recall_only:
        report["real_recall"] = {}
        for corpus in args.corpora.split(","):
            report["real_recall"][corpus] = real_recall(
                settings,
                corpus,
                pages_per_tree=args.pages_per_tree,
                candidates=args.scan_candidates,
            )
            print(corpus, json.dumps(report["real_recall"][corpus]), file=sys.stderr)
        return finish(report, args.out)
    report["build"] = load(settings, args.rows, args.reuse)
    print(json.dumps(report["build"]), file=sys.stderr)
    if not args.skip_recall:
        report["recall"] = recall(settings)
        print(json.dumps(report["recall"]), file=sys.stderr)

    warehouse = get_warehouse(settings)  # the service attaches to this running server
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "SEARCH_API_KEYS": API_KEY,
        "SEARCH_API_POOL_SIZE": str(args.concurrency),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DATABASE_URL", None)
    report["http"] = {}
    dbname = warehouse.params.get("dbname", "postgres")
    # Query batching (tasks/search/query_batching.py) against the unbatched path: one query per
    # model call, no cache. Vector mode, HNSW; the same clients, data and queries. The unbatched
    # path runs twice: as it was before batching (the model on torch's default threads, one per
    # core) and on the one thread the service now gives its model (SEARCH_EMBED_THREADS), so
    # the gain of each change shows apart.
    unbatched = {**env, "SEARCH_BATCH_MAX": "1", "SEARCH_QUERY_CACHE_SIZE": "0"}
    paths = (
        ("unbatched", {**unbatched, "SEARCH_EMBED_THREADS": "0"}),
        ("unbatched_one_thread", {**unbatched, "SEARCH_EMBED_THREADS": "1"}),
        ("batched", env),
    )
    for label, service_env in paths:
        service = start_service(service_env, args.port)
        try:
            key = f"vector_hnsw_{label}"
            report["http"][key] = load_test(
                args.port, "vector", args.seconds, args.concurrency, service.pid, args.group_by
            )
            print(key, json.dumps(report["http"][key]), file=sys.stderr)
        finally:
            service.terminate()
            service.wait(timeout=30)
    http = report["http"]
    before, after = http["vector_hnsw_unbatched"], http["vector_hnsw_batched"]
    one_thread = http["vector_hnsw_unbatched_one_thread"]
    report["batching"] = {
        "throughput_ratio": round(after["req_per_s"] / max(before["req_per_s"], 1e-9), 2),
        "throughput_ratio_vs_one_thread_unbatched": round(
            after["req_per_s"] / max(one_thread["req_per_s"], 1e-9), 2
        ),
        "p95_ms_unbatched": before["total_ms"]["p95"],
        "p95_ms_batched": after["total_ms"]["p95"],
    }
    print("batching", json.dumps(report["batching"]), file=sys.stderr)
    if args.batching_only:
        return finish(report, args.out)
    scenarios = [("hnsw", False)] + ([] if args.skip_exact_http else [("exact", True)])
    for label, exact in scenarios:
        with warehouse.connect(autocommit=True) as conn:
            value = "off" if exact else "on"
            conn.execute(f'alter database "{dbname}" set enable_indexscan = {value}')
        try:
            service = start_service(env, args.port)
            try:
                for mode in ("vector", "hybrid"):
                    key = f"{mode}_{label}"
                    report["http"][key] = load_test(
                        args.port, mode, args.seconds, args.concurrency, service.pid, args.group_by
                    )
                    print(key, json.dumps(report["http"][key]), file=sys.stderr)
            finally:
                service.terminate()
                service.wait(timeout=30)
        finally:
            with warehouse.connect(autocommit=True) as conn:
                conn.execute(f'alter database "{dbname}" reset enable_indexscan')
    return finish(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
