"""Retrieval evaluation and the CLIs, over the session's demo index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main as cli_main
from flows.evaluate import evaluate_retrieval

QUERIES = Path(__file__).resolve().parents[2] / "data" / "demo" / "queries.jsonl"


def evaluate_main(argv: list[str]) -> int:
    """``semantic-index evaluate <argv>`` in this process."""
    return cli_main(["evaluate", *argv])


def search_main(argv: list[str]) -> int:
    """``semantic-index search <argv>`` in this process."""
    return cli_main(["search", *argv])


def test_evaluation_scores_both_modes_on_the_demo_set(
    demo_env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert evaluate_main([str(QUERIES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lines = [x for x in QUERIES.read_text().splitlines() if x.strip()]
    assert set(report["modes"]) == {"vector", "hybrid"}
    for scores in report["modes"].values():
        assert scores["queries"] == len(lines)
        for name in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"):
            assert 0.0 <= scores[name] <= 1.0
        assert scores["recall@1"] <= scores["recall@5"] <= scores["recall@10"]
    # The demo's paraphrases are written to be findable: a drop here is a regression.
    assert report["modes"]["vector"]["recall@10"] >= 0.8
    assert report["modes"]["hybrid"]["recall@10"] >= 0.8


def test_min_ndcg_gate_fails_the_command(
    demo_env: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text(QUERIES.read_text().splitlines()[0] + "\n")
    assert evaluate_main([str(one), "--mode", "vector", "--min-ndcg", "0.5"]) == 0
    assert evaluate_main([str(one), "--mode", "vector", "--min-ndcg", "1.01"]) == 1
    assert "below --min-ndcg" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "missing.jsonl")]) == 2


def test_evaluation_runs_as_a_prefect_flow(demo_env: dict[str, object], tmp_path: Path) -> None:
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(QUERIES.read_text().splitlines()[:2]) + "\n")
    report = evaluate_retrieval(str(two), ["hybrid"])
    assert list(report.modes) == ["hybrid"]
    assert report.modes["hybrid"].queries == 2


def test_search_cli_modes_and_highlights(
    demo_env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert search_main(["Clearcall", "--mode", "hybrid", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "Clearcall" in out.splitlines()[0]
    assert "[Clearcall]" in out  # <mark> rendered for a terminal, HTML unescaped
    assert "&amp;" not in out
    assert search_main(["tent", "--mode", "vector", "--json", "-k", "2"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["document_id"].startswith("item:")
    assert search_main(["tent", "--filter", '{"colour": "red"}']) == 1
    assert "colour" in capsys.readouterr().err
