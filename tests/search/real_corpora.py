"""The real-corpus evaluation (issue 19, item 4), shared by its test slice and its benchmark.

A corpus is a documentation tree a Debian package ships, labelled by its own structure
(``data/eval/build.py`` writes the labels and ``data/eval/corpora.json``). Evaluating one runs
the product's real path:

1. the tree is served by Python's static file server (``tests/sources/debian_docs.py``);
2. the product's ``web`` source crawls it, the documented dbt models for crawled pages
   (``data/eval/dbt``) turn pages into documents of namespace ``docs``, the index embeds them
   with the configured embedder: all by the ``data_pipeline`` flow, configured through
   environment variables like a user's run, so every knob of :class:`tasks.settings.Settings`
   (chunking, grouping, candidates...) applies as set;
3. each labelled query is sent to the search service (``POST /search``) per mode, and the
   document ids it returns are scored by ``tasks/search/evaluation.py``. The service has no
   full-text-only mode, so mode ``text`` runs the service's own full-text search
   (:class:`tasks.search.fulltext.FullTextSearch`) in process on the same chunk table.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tasks.search.evaluation import (
    EVAL_DEPTH,
    LabeledQuery,
    ModeScores,
    load_queries,
    score_rankings,
)
from tasks.settings import Settings
from tests.sources.debian_docs import DocTree

REPO = Path(__file__).resolve().parents[2]
EVAL_DIR = REPO / "data" / "eval"
#: The labels' stand-in for the static server's origin (see data/eval/build.py).
ORIGIN_PLACEHOLDER = "{origin}"
#: The namespace the eval dbt project declares.
NAMESPACE = "docs"
#: Modes scored: the service's two, and full text alone (in process).
ALL_MODES = ("vector", "hybrid", "text")


@dataclass(frozen=True)
class Corpus:
    """One evaluation set as ``data/eval/corpora.json`` describes it."""

    name: str
    package: str
    root: str
    seed: str
    include_patterns: tuple[str, ...]
    queries: Path
    pages: int

    @property
    def tree(self) -> DocTree:
        """The tree to fetch and serve."""
        return DocTree(self.package, self.root, self.seed)


def load_corpora(eval_dir: Path = EVAL_DIR) -> dict[str, Corpus]:
    """The evaluation sets checked into ``data/eval`` (build them with data/eval/build.py)."""
    manifest = json.loads((eval_dir / "corpora.json").read_text(encoding="utf-8"))
    return {
        name: Corpus(
            name=name,
            package=entry["package"],
            root=entry["root"],
            seed=entry["seed"],
            include_patterns=tuple(entry["include_patterns"]),
            queries=eval_dir / entry["queries"],
            pages=int(entry["pages"]),
        )
        for name, entry in manifest.items()
    }


def labelled_queries(corpus: Corpus, origin: str, scratch: Path) -> list[LabeledQuery]:
    """The corpus's queries with answer ids for a server at ``origin``, read by the product's
    own query-file loader (the file is rewritten with the origin filled in, under ``scratch``)."""
    text = corpus.queries.read_text(encoding="utf-8").replace(ORIGIN_PLACEHOLDER, origin)
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / corpus.queries.name
    path.write_text(text, encoding="utf-8")
    return load_queries(path)


def answer_pages(queries: Sequence[LabeledQuery], origin: str) -> list[str]:
    """Paths (relative to the served root) of every labelled answer."""
    prefix = f"web:{origin}/"
    return sorted({doc.removeprefix(prefix) for q in queries for doc in q.relevant_ids})


@dataclass(frozen=True)
class Slice:
    """A small, deterministic part of a set: some queries and the pages the crawl stores."""

    queries: list[LabeledQuery]
    #: Pages to crawl (the queries' answers and distractors), relative to the served root.
    pages: list[str]


def slice_of(queries: Sequence[LabeledQuery], origin: str, n_queries: int, n_pages: int) -> Slice:
    """Every k-th query (spread over the set), their answers, and other labelled pages of the
    set as distractors up to ``n_pages`` pages."""
    step = max(1, len(queries) // n_queries)
    chosen = list(queries[::step][:n_queries])
    pages = answer_pages(chosen, origin)
    others = [p for p in answer_pages(queries, origin) if p not in set(pages)]
    spare = max(0, n_pages - len(pages))
    if spare and others:
        pages += others[:: max(1, len(others) // spare)][:spare]
    return Slice(chosen, sorted(pages))


def sources_yaml(corpus: Corpus, origin: str, pages: Sequence[str] | None = None) -> str:
    """A sources file with one ``web`` source ``docs``: the whole corpus from its seed, or (a
    slice) exactly ``pages`` as seeds with depth 0."""
    seeds = [f"{origin}/{p}" for p in pages] if pages is not None else [f"{origin}/{corpus.seed}"]
    config: dict[str, Any] = {
        "name": "docs",
        "kind": "web",
        "seeds": seeds,
        "max_pages": 10_000,
        "max_depth": 0 if pages is not None else 1_000,
        "include_patterns": list(corpus.include_patterns),
        "delay_s": 0,
        "allow_private_addresses": True,
        "http": {"backoff_s": 0.01, "max_attempts": 2},
    }
    return json.dumps({"sources": [config]}, indent=2)  # YAML is a superset of JSON


def dbt_project(directory: Path) -> Path:
    """The eval dbt project (data/eval/dbt) with the product's profile and macros, ready to run
    from ``directory``."""
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(EVAL_DIR / "dbt", directory)
    shutil.copy(REPO / "dbt_models" / "profiles.yml", directory / "profiles.yml")
    shutil.copytree(REPO / "dbt_models" / "macros", directory / "macros")
    return directory


def pipeline_env(
    corpus: Corpus, origin: str, workdir: Path, pages: Sequence[str] | None
) -> dict[str, str]:
    """Environment variables (besides DATABASE_URL and DATA_DIR) that make ``data_pipeline``
    crawl, model and index the corpus served at ``origin``."""
    workdir.mkdir(parents=True, exist_ok=True)
    sources = workdir / "sources.yml"
    sources.write_text(sources_yaml(corpus, origin, pages), encoding="utf-8")
    return {
        "SOURCES_FILE": str(sources),
        "DBT_PROJECT_DIR": str(dbt_project(workdir / "dbt")),
        "DBT_DOCS": "false",
    }


# --- scoring over the service -----------------------------------------------------------------


@dataclass
class ModeRun:
    """Scores of one mode and the latency of its searches as the client saw them."""

    scores: ModeScores
    latencies_ms: list[float] = field(default_factory=list)
    #: Each query with the document ids it got, in rank order (to see what beats the answers).
    rankings: list[tuple[LabeledQuery, Sequence[str]]] = field(default_factory=list)

    def wrong_at_rank_1(self, most: int = 5) -> list[tuple[str, int]]:
        """The documents that most often came first for a query they do not answer."""
        wrong = Counter(
            ranked[0] for q, ranked in self.rankings if ranked and ranked[0] not in q.relevant_ids
        )
        return wrong.most_common(most)

    def latency(self, quantile: float) -> float:
        """Client-side latency at ``quantile`` (0.5 = median), in ms."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return cuts[min(98, max(0, round(quantile * 100) - 1))]


def search_ids(
    client: httpx.Client, query: str, mode: str, top_k: int, extra: Mapping[str, Any]
) -> list[str]:
    """Document ids of ``POST /search``'s results, in rank order (``extra`` joins the body)."""
    body = {"query": query, "top_k": top_k, "mode": mode, "namespace": NAMESPACE, **extra}
    response = client.post("/search", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"POST /search {body} answered {response.status_code}: {response.text}")
    return [str(r["document_id"]) for r in response.json()["results"]]


class TextSearch:
    """Full-text search alone on the namespace's chunk table, as the service runs it."""

    def __init__(self, settings: Settings, physical_namespace: str) -> None:
        from tasks.search.fulltext import FullTextSearch, chunk_text_table
        from tasks.warehouse import get_warehouse

        self._search = FullTextSearch(get_warehouse(settings), settings.search_fulltext_config)
        self._table = chunk_text_table(settings, physical_namespace)

    def ids(self, query: str, top_k: int) -> list[str]:
        """Document ids of the best ``top_k`` chunks for ``query``."""
        return [hit.document_id for hit in self._search.search(self._table, query, top_k)]

    def close(self) -> None:
        """Close the connection."""
        self._search.close()


def evaluate_modes(
    api_url: str,
    api_key: str,
    queries: Sequence[LabeledQuery],
    modes: Sequence[str],
    text: TextSearch | None = None,
    top_k: int = EVAL_DEPTH,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, ModeRun]:
    """Every query in every mode (``text`` in process through ``text``, the others over
    HTTP), scored, with each search's latency."""
    runs: dict[str, ModeRun] = {}
    with httpx.Client(base_url=api_url, headers={"X-API-Key": api_key}, timeout=120) as client:
        for mode in modes:
            if mode == "text" and text is None:
                raise ValueError("mode text needs a TextSearch on the namespace's chunk table")
            rankings: list[tuple[LabeledQuery, Sequence[str]]] = []
            latencies: list[float] = []
            for q in queries:
                started = time.perf_counter()
                if mode == "text":
                    assert text is not None
                    ranked = text.ids(q.query, top_k)
                else:
                    ranked = search_ids(client, q.query, mode, top_k, extra or {})
                latencies.append((time.perf_counter() - started) * 1000)
                rankings.append((q, ranked))
            runs[mode] = ModeRun(score_rankings(mode, rankings), latencies, rankings)
    return runs


METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")


def table(corpus: str, runs: Mapping[str, ModeRun]) -> str:
    """A Markdown table: one row per mode, the metrics and client latency."""
    head = ["corpus", "mode", "queries", *METRICS, "p50 ms", "p95 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, run in runs.items():
        values = [f"{run.scores.metrics[m]:.3f}" for m in METRICS]
        lines.append(
            f"| {corpus} | {mode} | {run.scores.queries} | "
            + " | ".join(values)
            + f" | {run.latency(0.5):.0f} | {run.latency(0.95):.0f} |"
        )
    return "\n".join(lines)
