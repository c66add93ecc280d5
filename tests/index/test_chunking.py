"""Token-aware chunking: table-driven, with a word counter (1 token per word) and the real
cl100k tokenizer for the hard cases."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from tasks.embedders.openai import tiktoken_encoding
from tasks.index.chunking import (
    ChunkerConfig,
    Piece,
    Section,
    chunk_document,
    chunk_id,
    chunk_pieces,
    metadata_hash,
    sections_from_json,
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


def sectioned(*parts: tuple[tuple[str, ...], str, bool]) -> tuple[str, tuple[Section, ...]]:
    """A text made of ``(path, body, heading line in the text)`` sections, and its sections
    (what the web source stores: offsets, ``text_start`` past the heading's own line)."""
    text, sections = "", []
    for path, body, with_heading in parts:
        if text:
            text += "\n"
        start = len(text)
        if with_heading:
            text += path[-1] + "\n"
        sections.append((start, len(text), path))
        text += body
    ends = [s for s, _, _ in sections[1:]] + [len(text)]
    return text, tuple(
        Section(s, e, path, body) for (s, body, path), e in zip(sections, ends, strict=True)
    )


SECTIONS_ON = ChunkerConfig(max_tokens=16, sections=True, heading_prefix=True)
LONG = " ".join(f"w{i}" for i in range(20))

SECTION_CASES = [
    # (name, parts, title, config, expected pieces)
    (
        "one chunk per section, prefixed with title and heading path",
        [(("Intro",), "a b c d e f", False), (("Intro", "Setup"), "g h i j k l", False)],
        "Guide",
        SECTIONS_ON,
        [
            Piece("Guide > Intro\n\na b c d e f", 9, "Intro"),
            Piece("Guide > Intro > Setup\n\ng h i j k l", 11, "Intro > Setup"),
        ],
    ),
    (
        "the heading line in the text is left out: the prefix says it",
        [(("Usage",), "a b c d e f", True), (("Options",), "g h i j k l", True)],
        "git-x",
        SECTIONS_ON,
        [
            Piece("git-x > Usage\n\na b c d e f", 9, "Usage"),
            Piece("git-x > Options\n\ng h i j k l", 9, "Options"),
        ],
    ),
    (
        "a tiny section joins its neighbour, under their common path",
        [(("A", "x"), "a", False), (("A", "y"), "b c d e f g", False)],
        "T",
        SECTIONS_ON,
        [Piece("T > A\n\na\nb c d e f g", 10, "A")],
    ),
    (
        "a long section is split as a whole text would be, every piece prefixed",
        [(("Long",), LONG, False)],
        "T",
        SECTIONS_ON,
        [
            Piece("T > Long\n\n" + " ".join(f"w{i}" for i in range(13)), 16, "Long"),
            Piece("T > Long\n\n" + " ".join(f"w{i}" for i in range(13, 20)), 10, "Long"),
        ],
    ),
    (
        "a first heading equal to the title is not repeated",
        [(("Guide",), "a b c d e f", False), (("Guide", "Setup"), "g h i j k l", False)],
        "Guide",
        SECTIONS_ON,
        [
            Piece("Guide\n\na b c d e f", 7, "Guide"),
            Piece("Guide > Setup\n\ng h i j k l", 9, "Guide > Setup"),
        ],
    ),
    (
        "sections without the heading prefix: title only, heading line kept",
        [(("Usage",), "a b c d e f", True), (("Options",), "g h i j k l", True)],
        "git-x",
        ChunkerConfig(max_tokens=16, sections=True),
        [
            Piece("git-x\n\nUsage\na b c d e f", 8, "Usage"),
            Piece("git-x\n\nOptions\ng h i j k l", 8, "Options"),
        ],
    ),
    (
        "a prefix over half the budget loses its top headings first",
        [(("h1 h2 h3 h4 h5", "h6"), "a b c d e f", False)],
        "T",
        SECTIONS_ON,
        [Piece("T > h6\n\na b c d e f", 9, "h1 h2 h3 h4 h5 > h6")],
    ),
]


@pytest.mark.parametrize(
    ("parts", "title", "config", "expected"),
    [c[1:] for c in SECTION_CASES],
    ids=[c[0] for c in SECTION_CASES],
)
def test_chunk_pieces_along_sections(
    parts: list[tuple[tuple[str, ...], str, bool]],
    title: str,
    config: ChunkerConfig,
    expected: list[Piece],
) -> None:
    text, sections = sectioned(*parts)
    assert chunk_pieces(text, title, config, words, sections) == expected


def test_text_before_the_first_section_is_a_chunk_of_its_own_without_the_title() -> None:
    body, sections = sectioned((("Usage",), "g h i j k l", False))
    preamble = "T\n\nintro words here for the page\n"
    text = preamble + body
    moved = tuple(s.shifted(len(preamble), len(text)) for s in sections)
    assert chunk_pieces(text, "T", SECTIONS_ON, words, moved) == [
        Piece("T\n\nintro words here for the page", 7, ""),
        Piece("T > Usage\n\ng h i j k l", 9, "Usage"),
    ]


@pytest.mark.parametrize("max_tokens", [16, 50, 120])
@pytest.mark.parametrize("prefix", [False, True])
def test_documents_without_sections_chunk_exactly_as_before(max_tokens: int, prefix: bool) -> None:
    """No sections (or the switch off): the output is :func:`chunk_document`'s of before."""
    text = "\n\n".join(f"Paragraph {p}. " + "Tents and stoves. " * 9 for p in range(5))
    plain = ChunkerConfig(max_tokens=max_tokens, overlap_tokens=8)
    on = ChunkerConfig(
        max_tokens=max_tokens, overlap_tokens=8, sections=True, heading_prefix=prefix
    )
    before = chunk_document(text, "Camping", plain, cl100k)
    assert chunk_document(text, "Camping", on, cl100k) == before
    _, sections = sectioned((("A",), text, False))
    assert chunk_document(text, "Camping", plain, cl100k, sections) == before
    assert [
        (p.text, p.tokens, p.heading_path) for p in chunk_pieces(text, "Camping", on, cl100k)
    ] == [(t, n, "") for t, n in before]


def test_section_chunks_fit_the_budget_and_cover_every_section_with_a_real_tokenizer() -> None:
    parts = [
        ((f"Chapter {c}", f"Part {c}.{k}"), "Tents and stoves. " * (3 + 11 * k), False)
        for c in range(3)
        for k in range(3)
    ]
    text, sections = sectioned(*parts)
    config = ChunkerConfig(max_tokens=40, overlap_tokens=8, sections=True, heading_prefix=True)
    pieces = chunk_pieces(text, "Camping", config, cl100k, sections)
    for piece in pieces:
        assert piece.tokens == cl100k([piece.text])[0] <= 40
        prefix, _, body = piece.text.partition("\n\n")
        assert body in text
        assert prefix == " > ".join(["Camping", *piece.heading_path.split(" > ")])
    paths = {p.heading_path for p in pieces}
    # Every long section is named by some chunk; the short ones may be merged into a parent.
    long_paths = {" > ".join(path) for path, body, _ in parts if len(body) > 100}
    assert long_paths <= paths


def test_section_switches_enter_the_fingerprint_only_when_on() -> None:
    off = ChunkerConfig(max_tokens=64)
    assert "sections" not in off.as_dict()  # indexes built before the switches keep theirs
    assert ChunkerConfig(max_tokens=64, sections=True).as_dict() != off.as_dict()
    assert (
        ChunkerConfig(max_tokens=64, sections=True, heading_prefix=True).as_dict()
        != ChunkerConfig(max_tokens=64, sections=True).as_dict()
    )


def test_sections_from_json_reads_the_stored_layout_and_rejects_others() -> None:
    stored = [
        {"level": 2, "heading": "B", "path": ["A", "B"], "start": 9, "text_start": 11, "end": 20},
        {"level": 1, "heading": "A", "path": ["A"], "start": 0, "end": 9},
    ]
    assert sections_from_json(stored) == (
        Section(0, 9, ("A",), None),
        Section(9, 20, ("A", "B"), 11),
    )
    assert sections_from_json(None) == () == sections_from_json("[]")
    for bad in [{"start": 1}, [{"start": "x", "end": 2, "path": []}], [{"end": 1, "path": []}]]:
        with pytest.raises(ValueError, match="section"):
            sections_from_json(bad)
