"""Every benchmark under ``bench/`` runs to the end at a tiny size and prints its figures.

Benchmarks are run by hand, rarely, on a quiet machine; without this a change to the code they
drive breaks them unseen (it happened: ``bench_embed`` timed a path the index run had stopped
using and crashed). The sizes here prove only that each one still works, not any figure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, settings_env_names

BENCH = REPO / "bench"

#: (script and tiny arguments, text its output must contain: a figure it exists to print).
RUNS = {
    "embed": (["bench_embed.py", "--corpus", "synthetic", "--docs", "60", "--openai-texts",
               "300", "--rounds", "1"], "padded tokens per real token"),
    "ingest": (["bench_ingest.py", "--rows", "2000", "--repeat", "1", "--disposition", "merge"],
               '"ratio"'),
    "pinecone_upsert": (["bench_pinecone_upsert.py", "--vectors", "500", "--parallel", "1", "2",
                         "--per-call", "200"], "records per upsert call"),
    "scale": (["bench_scale.py", "--docs", "300"], "index step / raw COPY"),
    "search": (["bench_search.py", "--rows", "500", "--seconds", "2", "--concurrency", "2",
                "--skip-exact-http", "--skip-recall"], "req_per_s"),
    "search_real_recall": (["bench_search.py", "--real-recall-only", "--corpora", "debian",
                            "--pages-per-tree", "2"], '"forced_hnsw"'),
    "sections": (["bench_sections.py", "--max-pages", "1"], "sections + heading prefix"),
    "sharding": (["bench_sharding.py", "--docs", "20", "--embedder", "openai", "--latency",
                  "0"], "2 workers vs 1 worker"),
    "real_corpora": (["bench_real_corpora.py", "--corpus", "git-doc", "--modes", "vector",
                      "--slice", "3", "3"], "ndcg"),
}  # fmt: skip


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_runs_at_a_tiny_size(name: str, tmp_path: Path) -> None:
    args, figure = RUNS[name]
    if name.startswith("search"):
        args = [*args, "--data-dir", str(tmp_path / "search"), "--port", str(free_port())]
    if name == "real_corpora":
        args = [*args, "--data-dir", str(tmp_path / "corpora")]
    # The benchmarks start their own servers: no setting of the session may reach them.
    env = {k: v for k, v in os.environ.items() if k.lower() not in settings_env_names()}
    result = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert figure.lower() in result.stdout.lower(), result.stdout[-3000:]
