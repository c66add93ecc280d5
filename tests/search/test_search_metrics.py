"""Retrieval metrics and rank fusion: pure functions, table-driven."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.search.evaluation import (
    LabeledQuery,
    distinct,
    load_queries,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    score_rankings,
)
from tasks.search.searcher import reciprocal_rank_fusion
from tasks.stores.base import SearchHit


@pytest.mark.parametrize(
    ("ranked", "relevant", "k", "expected"),
    [
        (["a", "b", "c"], {"a"}, 1, 1.0),
        (["b", "a", "c"], {"a"}, 1, 0.0),
        (["b", "a", "c"], {"a"}, 5, 1.0),
        (["b", "a", "c"], {"a", "z"}, 5, 0.5),
        ([], {"a"}, 10, 0.0),
        (["a"], set(), 10, 0.0),
        (["x"] * 9 + ["a"], {"a"}, 10, 1.0),
        (["x"] * 10 + ["a"], {"a"}, 10, 0.0),
    ],
)
def test_recall_at_k(ranked: list[str], relevant: set[str], k: int, expected: float) -> None:
    assert recall_at_k(ranked, relevant, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ranked", "relevant", "expected"),
    [
        (["a", "b"], {"a"}, 1.0),
        (["b", "a"], {"a"}, 0.5),
        (["b", "c", "a"], {"a", "c"}, 0.5),
        (["b", "c"], {"a"}, 0.0),
        ([], {"a"}, 0.0),
    ],
)
def test_reciprocal_rank(ranked: list[str], relevant: set[str], expected: float) -> None:
    assert reciprocal_rank(ranked, relevant) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ranked", "relevant", "expected"),
    [
        (["a", "b"], {"a"}, 1.0),
        (["b", "a"], {"a"}, 1 / math.log2(3)),
        (["a", "b"], {"a", "b"}, 1.0),
        (["b", "x", "a"], {"a", "b"}, (1 + 1 / 2) / (1 + 1 / math.log2(3))),
        (["x", "y"], {"a"}, 0.0),
        (["x"] * 10 + ["a"], {"a"}, 0.0),
    ],
)
def test_ndcg_at_10(ranked: list[str], relevant: set[str], expected: float) -> None:
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(expected)


def test_chunks_of_one_document_count_once() -> None:
    assert distinct(["d1", "d1", "d2", "d1", "d3"]) == ["d1", "d2", "d3"]
    q = LabeledQuery("q", frozenset({"d2"}))
    scores = score_rankings("vector", [(q, ["d1", "d1", "d2"])])
    assert scores.metrics["mrr"] == pytest.approx(0.5)
    assert scores.metrics["recall@1"] == 0.0
    assert scores.metrics["recall@5"] == 1.0


def test_scores_average_over_queries_and_list_misses() -> None:
    hit = LabeledQuery("found", frozenset({"a"}))
    miss = LabeledQuery("lost", frozenset({"z"}))
    scores = score_rankings("hybrid", [(hit, ["a"]), (miss, ["a"])])
    assert scores.queries == 2
    assert scores.metrics["recall@1"] == pytest.approx(0.5)
    assert scores.metrics["mrr"] == pytest.approx(0.5)
    assert scores.misses == ["lost"]


def _hit(i: str) -> SearchHit:
    return SearchHit(id=i, document_id=i, score=0.0, text="", metadata={})


@pytest.mark.parametrize(
    ("rankings", "expected_order"),
    [
        ([["a", "b"], ["b", "a"]], ["a", "b"]),  # tie: first appearance wins
        ([["a", "b", "c"], ["c"]], ["c", "a", "b"]),  # in both lists beats first of one
        ([["a"], []], ["a"]),
        ([[], ["x", "y"]], ["x", "y"]),
        ([["a", "b"], ["c", "d"]], ["a", "c", "b", "d"]),
    ],
)
def test_reciprocal_rank_fusion_order(rankings: list[list[str]], expected_order: list[str]) -> None:
    fused = reciprocal_rank_fusion([[_hit(i) for i in r] for r in rankings], k=60)
    assert [h.id for h in fused] == expected_order


def test_reciprocal_rank_fusion_scores_and_cut() -> None:
    fused = reciprocal_rank_fusion([[_hit("a"), _hit("b")], [_hit("b")]], k=60, top_k=1)
    assert [h.id for h in fused] == ["b"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "", "relevant_ids": ["a"]}', "non-empty string"),
        ('{"query": "x", "relevant_ids": []}', "relevant_ids"),
        ('{"query": "x"}', "relevant_ids"),
        ("not json", "Expecting value"),
    ],
)
def test_bad_query_files_say_which_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_queries(path)
    assert f"{path}:1:" in str(info.value)
    assert message in str(info.value)


def test_query_file_accepts_synonyms_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"query": "a", "relevant_ids": ["item:1"], "filter": {"category": "toys"}}\n\n'
        '{"query": "b", "relevant_document_ids": ["item:2", "item:3"]}\n'
    )
    queries = load_queries(path)
    assert queries[0].filter == {"category": "toys"}
    assert queries[1].relevant_ids == {"item:2", "item:3"}
    assert queries[1].filter is None
