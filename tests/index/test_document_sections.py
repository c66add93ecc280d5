"""Sections of a documents-model row: offsets moved from the body column into the joined text."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.errors import ConfigError
from tasks.index.chunking import Section
from tasks.index.documents import EmbeddingSpec, document_sections

SPEC = EmbeddingSpec(
    model="model.x.pages",
    schema_name="analytics",
    relation="pages",
    id_column="document_id",
    text_columns=["title", "body"],
    title_column="title",
    sections_column="sections",
    namespace="pages",
)


def joined(row: dict[str, Any]) -> tuple[list[str], str]:
    """The parts and text the documents reader builds (stripped parts, separator between)."""
    parts = [str(row[c]) for c in SPEC.text_columns if row[c] is not None and str(row[c]).strip()]
    return parts, SPEC.text_separator.join(p.strip() for p in parts)


def test_offsets_point_into_the_joined_text() -> None:
    body = "  Setup\nInstall it.\nUse\nRun it."
    row = {
        "document_id": "d",
        "title": " Guide ",
        "body": body,
        "sections": [
            {"path": ["Setup"], "start": 2, "text_start": 7, "end": 20},
            {"path": ["Use"], "start": 20, "text_start": 23, "end": len(body)},
        ],
    }
    parts, text = joined(row)
    sections = document_sections(SPEC, row, parts, text)
    assert [text[s.start : s.end].strip() for s in sections] == [
        "Setup\nInstall it.",
        "Use\nRun it.",
    ]
    assert [text[s.text_start or 0 : s.end].strip() for s in sections] == ["Install it.", "Run it."]
    assert sections[0].path == ("Setup",)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"document_id": "d", "title": "T", "body": "b", "sections": None}, ()),
        ({"document_id": "d", "title": "T", "body": None, "sections": []}, ()),
    ],
)
def test_no_sections(row: dict[str, Any], expected: tuple[Section, ...]) -> None:
    parts, text = joined(row)
    assert document_sections(SPEC, row, parts, text) == expected


def test_a_column_that_does_not_hold_sections_is_a_config_error() -> None:
    row = {"document_id": "d", "title": "T", "body": "b", "sections": {"not": "a list"}}
    parts, text = joined(row)
    with pytest.raises(ConfigError, match="sections of document d"):
        document_sections(SPEC, row, parts, text)
