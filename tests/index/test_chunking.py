"""Token-aware chunking: table-driven, with a word counter (1 token per word) and the real
cl100k tokenizer for the hard cases."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from tasks.embedders.openai import tiktoken_encoding
from tasks.index.chunking import (
    ChunkerConfig,
    chunk_document,
    chunk_id,
    metadata_hash,
    split_text,
    text_hash,
)


def words(texts: Sequence[str]) -> list[int]:
    """One token per whitespace-separated word."""
    return [len(t.split()) for t in texts]


def chars10(texts: Sequence[str]) -> list[int]:
    """One token per 10 characters (forces hard cuts inside long words)."""
    return [-(-len(t) // 10) for t in texts]


def cl100k(texts: Sequence[str]) -> list[int]:
    encoding = tiktoken_encoding()
    assert encoding is not None
    return [len(encoding.encode_ordinary(t)) for t in texts]


PARAS = (
    "Para one has five words.\n\n"
    "Second paragraph. It has two sentences here.\n\n"
    "Third para is a rather long one with many many words in it going on and on."
)

CASES = [
    # (name, text, max_tokens, overlap, counter, expected chunks)
    ("empty", "   \n\n ", 10, 0, words, []),
    ("fits whole, stripped", "  a short text \n", 10, 0, words, [("a short text", 3)]),
    (
        "paragraph boundaries first",
        PARAS,
        12,
        0,
        words,
        [
            ("Para one has five words.\n\nSecond paragraph. It has two sentences here.", 12),
            ("Third para is a rather long one with many many words in", 12),
            ("it going on and on.", 5),
        ],
    ),
    (
        "sentence boundary preferred over word",
        "One two three four. Five six seven eight nine. Ten eleven.",
        7,
        0,
        words,
        [("One two three four.", 4), ("Five six seven eight nine. Ten eleven.", 7)],
    ),
    (
        "overlap carries whole trailing pieces",
        "a b c d e f g h i j",
        4,
        2,
        words,
        [("a b c d", 4), ("c d e f", 4), ("e f g h", 4), ("g h i j", 4)],
    ),
    (
        "hard cut inside a word longer than the budget",
        "x" * 45,
        2,
        0,
        chars10,
        [("x" * 20, 2), ("x" * 20, 2), ("x" * 5, 1)],
    ),
]


@pytest.mark.parametrize(
    ("text", "max_tokens", "overlap", "count", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_split_text(
    text: str, max_tokens: int, overlap: int, count: object, expected: list[tuple[str, int]]
) -> None:
    assert split_text(text, max_tokens, overlap, count) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("max_tokens", [16, 50, 120])
@pytest.mark.parametrize("overlap", [0, 8])
def test_real_tokenizer_chunks_fit_cover_and_are_verbatim(max_tokens: int, overlap: int) -> None:
    text = (
        "\n\n".join(
            f"Paragraph {p}. "
            + " ".join(f"Sentence {p}.{s} talks about tents and stoves." for s in range(7))
            for p in range(6)
        )
        + " "
        + "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(10))
    )
    chunks = split_text(text, max_tokens, overlap, cl100k)
    assert len(chunks) > 1
    for piece, tokens in chunks:
        assert piece in text  # verbatim slices
        assert tokens == cl100k([piece])[0] <= max_tokens
    # In order, verbatim, covering every non-space character; disjoint without overlap.
    covered = [False] * len(text)
    cursor, previous_end = 0, 0
    for piece, _ in chunks:
        pos = text.find(piece, cursor)
        assert pos >= 0
        if overlap == 0:
            assert pos >= previous_end
        for k in range(pos, pos + len(piece)):
            covered[k] = True
        cursor, previous_end = pos + 1, pos + len(piece)
    assert all(covered[k] for k, ch in enumerate(text) if not ch.isspace())


TITLE_CASES = [
    # (name, text, title, prepend, expected) with max_tokens=8, no overlap
    ("no title", "a b c", None, True, [("a b c", 3)]),
    ("prepended", "a b c", "T", True, [("T\n\na b c", 4)]),
    ("not prepended when off", "a b c", "T", False, [("a b c", 3)]),
    ("taken off the text, not chunked twice", "T\n\na b", "T", True, [("T\n\na b", 3)]),
    (
        "starts with it: every piece gets it",
        "T\n\na b c d e f g h i j k l m n",
        "T",
        True,
        [("T\n\na b c d e f g", 8), ("T\n\nh i j k l m n", 8)],
    ),
    (
        "every chunk carries it, within the budget",
        "a b c d e f g h i j k l m n",
        "T",
        True,
        [("T\n\na b c d e f g", 8), ("T\n\nh i j k l m n", 8)],
    ),
    ("a longer first word is not the title", "Tea b", "Te", True, [("Te\n\nTea b", 3)]),
    ("too long a title is dropped", "a b c", "t1 t2 t3 t4 t5", True, [("a b c", 3)]),
]


@pytest.mark.parametrize(
    ("text", "title", "prepend", "expected"),
    [c[1:] for c in TITLE_CASES],
    ids=[c[0] for c in TITLE_CASES],
)
def test_chunk_document_title(
    text: str, title: str | None, prepend: bool, expected: list[tuple[str, int]]
) -> None:
    config = ChunkerConfig(max_tokens=8, prepend_title=prepend)
    assert chunk_document(text, title, config, words) == expected


def test_ids_and_hashes_are_stable() -> None:
    assert chunk_id("item:7", 2) == "item:7#2"
    assert chunk_id("item:7", 2) == chunk_id("item:7", 2)
    hashed = chunk_id("ü" * 3, 0)
    assert hashed.isascii() and hashed.endswith("#0") and hashed == chunk_id("ü" * 3, 0)
    assert len(chunk_id("x" * 1000, 0)) < 64
    assert text_hash("a") == text_hash("a") != text_hash("a ")
    assert metadata_hash({"a": 1, "b": [1, 2]}) == metadata_hash({"b": [1, 2], "a": 1})
    assert metadata_hash({"a": 1}) != metadata_hash({"a": 2})


@pytest.mark.parametrize(("max_tokens", "overlap"), [(4, 0), (100, 51), (10, -1)])
def test_config_rejects_unusable_values(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkerConfig(max_tokens=max_tokens, overlap_tokens=overlap)
