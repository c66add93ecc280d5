"""The search CLI, run as a user would: a subprocess against the demo index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.search", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration
def test_cli_prints_ranked_results(demo_index: dict[str, object]) -> None:
    env = demo_index["env"]  # type: ignore[assignment]
    out = run_cli("tent for backpacking", "--top-k", "3", "--json", env=env)  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert {"chunk_id", "document_id", "title", "snippet", "metadata"} <= set(rows[0])

    filtered = run_cli("gift", "--filter", '{"category": "books"}', "--json", env=env)  # type: ignore[arg-type]
    assert filtered.returncode == 0, filtered.stderr
    assert {json.loads(line)["metadata"]["category"] for line in filtered.stdout.splitlines()} == {
        "books"
    }


@pytest.mark.integration
def test_cli_rejects_bad_input(demo_index: dict[str, object]) -> None:
    env = demo_index["env"]  # type: ignore[assignment]
    bad_json = run_cli("tent", "--filter", "{oops", env=env)  # type: ignore[arg-type]
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_key = run_cli("tent", "--filter", '{"price": {"$regex": "x"}}', env=env)  # type: ignore[arg-type]
    assert bad_key.returncode == 1 and "Unknown filter operator" in bad_key.stderr
