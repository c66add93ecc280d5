"""Sections of a documents-model row: offsets moved from the body column into the joined text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tasks.errors import ConfigError
from tasks.index.chunking import ChunkerConfig, Section
from tasks.index.documents import Document, EmbeddingSpec, document_sections
from tasks.index.run import document_chunks

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


def test_chunks_of_a_sectioned_document_carry_their_heading_path() -> None:
    text = "Guide\n\nSetup\nInstall it here.\nUse\nRun it every day."
    start_use = text.index("Use")
    doc = Document(
        "d",
        text,
        "Guide",
        None,
        None,
        {},
        (
            Section(7, start_use, ("Setup",), 12),
            Section(start_use, len(text), ("Use",), start_use + 3),
        ),
    )
    config = ChunkerConfig(max_tokens=12, sections=True, heading_prefix=True)
    chunks = document_chunks(doc, config, words)
    assert [c.text for c in chunks] == [
        "Guide > Setup\n\nInstall it here.",
        "Guide > Use\n\nRun it every day.",
    ]
    assert [c.metadata["heading_path"] for c in chunks] == ["Setup", "Use"]
    plain = document_chunks(Document("d", text, "Guide", None, None, {}), config, words)
    assert all("heading_path" not in c.metadata for c in plain)


def words(texts: Sequence[str]) -> list[int]:
    """One token per whitespace-separated word."""
    return [len(t.split()) for t in texts]
