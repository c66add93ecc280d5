"""Grouping chunks into documents: scoring rules, order, fusion (pure, table-driven)."""

from __future__ import annotations

from typing import get_args

import pytest

from tasks.search.grouping import (
    DEFAULT_RULE,
    SCORE_RULES,
    fuse_groups,
    group_hits,
    score_document,
)
from tasks.settings import Settings
from tasks.stores.base import SearchHit


def hit(chunk: str, score: float) -> SearchHit:
    """A hit of chunk ``<doc>#<n>``."""
    return SearchHit(id=chunk, document_id=chunk.split("#")[0], score=score, text="", metadata={})


@pytest.mark.parametrize(
    ("rule", "scores", "expected"),
    [
        ("max", [0.9, 0.8, 0.7, 0.6], 0.9),
        ("max_bonus", [0.9, 0.8, 0.7, 0.6], 0.9 + 0.1 * (0.8 + 0.7)),
        ("sum_top", [0.9, 0.8, 0.7, 0.6], 0.9 + 0.8 + 0.7),
        ("max", [0.5], 0.5),
        ("max_bonus", [0.5], 0.5),
        ("sum_top", [], 0.0),
    ],
)
def test_score_rules(rule: str, scores: list[float], expected: float) -> None:
    assert score_document(scores, rule) == pytest.approx(expected)  # type: ignore[arg-type]


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bonus"):
        score_document([1.0], "mean")  # type: ignore[arg-type]


def test_the_setting_names_the_rules_and_defaults_to_the_default_rule() -> None:
    # settings.py cannot import grouping (a cycle through the stores): its Literal is a copy.
    field = Settings.model_fields["search_group_rule"]
    assert get_args(field.annotation) == SCORE_RULES
    assert field.default == DEFAULT_RULE


LONG_PAGE = [hit("long#0", 0.80), hit("long#3", 0.79), hit("long#1", 0.78), hit("long#2", 0.77)]
RANKING = [*LONG_PAGE[:2], hit("short#0", 0.795), *LONG_PAGE[2:], hit("other#4", 0.5)]


@pytest.mark.parametrize(
    ("rule", "order"),
    [
        # Every rule agrees when the long page also holds the best chunk.
        ("max", ["long", "short", "other"]),
        ("max_bonus", ["long", "short", "other"]),
        ("sum_top", ["long", "short", "other"]),
    ],
)
def test_group_hits_orders_documents(rule: str, order: list[str]) -> None:
    groups = group_hits(RANKING, rule)  # type: ignore[arg-type]
    assert [g.document_id for g in groups] == order
    assert [h.id for h in groups[0].hits] == ["long#0", "long#3", "long#1", "long#2"]


def test_sum_top_lets_a_long_page_overtake_a_better_short_one() -> None:
    ranking = [hit("short#0", 0.9), *LONG_PAGE]
    assert [g.document_id for g in group_hits(ranking, "max")] == ["short", "long"]
    assert [g.document_id for g in group_hits(ranking, "sum_top")] == ["long", "short"]


def test_ties_keep_first_appearance() -> None:
    groups = group_hits([hit("b#0", 0.5), hit("a#0", 0.5), hit("b#1", 0.5)])
    assert [g.document_id for g in groups] == ["b", "a"]
    assert [h.id for h in groups[0].hits] == ["b#0", "b#1"]


def test_fuse_groups_by_reciprocal_rank() -> None:
    vector = group_hits([hit("a#0", 0.9), hit("b#0", 0.8)])
    text = group_hits([hit("b#1", 3.0), hit("c#0", 2.0)])
    fused = fuse_groups([vector, text], k=60)
    assert [g.document_id for g in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert [h.id for h in fused[0].hits] == ["b#0", "b#1"]  # chunks of both rankings, once
