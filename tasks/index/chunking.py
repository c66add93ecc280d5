"""Token-aware chunking: documents into chunks that fit the embedding model, with stable ids.

Pure functions; the only dependency is a token counter (the embedding model's own tokenizer,
passed in as ``count``). A text is split on paragraph boundaries first, then sentences, then
words, and only a single word longer than the budget is cut hard. The pieces are packed greedily
into chunks of at most ``max_tokens`` tokens, consecutive chunks sharing up to
``overlap_tokens`` tokens of trailing pieces. Chunk text is always a verbatim slice of the
document text (whitespace kept), optionally with the document title prepended.

A document that carries sections (a crawled page: heading path and character offsets of each
section, :class:`Section`) is cut along them first when ``ChunkerConfig.sections`` is on: each
section is chunked on its own as above (a section shorter than a quarter of the budget joins its
neighbour instead of becoming a tiny chunk), and with ``heading_prefix`` every chunk reads
``<title> > <heading> > <sub-heading>\n\n<piece>``, so a chunk knows where it sits in the page.
A document without sections is chunked exactly as before.

Chunk ids are ``<document id>#<position>``: the same document chunked with the same settings
always yields the same ids, so a re-run touches only what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Token counts of many texts at once (one call per batch keeps HF tokenizers fast).
TokenCounter = Callable[[Sequence[str]], list[int]]

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?…。])\s+")
_WORD = re.compile(r"\s+")

#: Separator between a prepended title and the chunk body.
TITLE_SEPARATOR = "\n\n"
#: Separator between the title and the headings of a heading path.
PATH_SEPARATOR = " > "
#: A section under this share of the chunk budget joins a neighbour (1/4: a heading and a
#: sentence or two).
SMALL_SECTION_SHARE = 4
#: Longest heading path kept in chunk metadata (Pinecone: 40 KB per vector for all metadata).
MAX_HEADING_PATH_CHARS = 500
#: Pinecone's id limit is 512 ASCII chars; longer or non-ASCII document ids are hashed.
MAX_ID_CHARS = 200


@dataclass(frozen=True)
class ChunkerConfig:
    """How documents become chunks. Part of the index fingerprint: changing it rebuilds."""

    max_tokens: int
    overlap_tokens: int = 0
    prepend_title: bool = True
    #: Cut documents that carry sections along them first.
    sections: bool = False
    #: With ``sections``: prefix each chunk with the title and its heading path.
    heading_prefix: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError(f"chunk size must be at least 8 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError(
                f"chunk overlap must be between 0 and half the chunk size "
                f"({self.max_tokens // 2}), got {self.overlap_tokens}"
            )

    def as_dict(self) -> dict[str, Any]:
        """The settings that change chunk texts (for the fingerprint).

        The section switches appear only when on, so an index built without them keeps its
        fingerprint (its chunks are the same as before they existed).
        """
        out: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "overlap_tokens": self.overlap_tokens,
            "prepend_title": self.prepend_title,
            "version": 1,
        }
        if self.sections:
            out["sections"] = True
            out["heading_prefix"] = self.heading_prefix
        return out


@dataclass(frozen=True)
class Section:
    """One section of a document's text: character offsets and the headings above it.

    ``text_start`` is where its text starts after the heading's own line (``start`` when the
    text does not repeat the heading); ``path`` runs from the top heading to its own.
    """

    start: int
    end: int
    path: tuple[str, ...]
    text_start: int | None = None

    def shifted(self, by: int, limit: int) -> Section:
        """The same section with offsets moved by ``by`` and clamped to ``[0, limit]``."""

        def move(offset: int) -> int:
            return min(max(offset + by, 0), limit)

        body = None if self.text_start is None else move(self.text_start)
        return Section(move(self.start), move(self.end), self.path, body)


def sections_from_json(value: Any) -> tuple[Section, ...]:
    """Sections as the web source stores them (a JSON list of ``{"start", "end", "path", ...}``;
    ``text_start`` optional), in text order.

    Raises:
        ValueError: ``value`` is not such a list (the message shows the first bad entry).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError(f"sections must be a JSON list, got {type(value).__name__}")
    out = []
    for entry in value:
        try:
            start, end = int(entry["start"]), int(entry["end"])
            path = tuple(str(h) for h in entry["path"])
            body = entry.get("text_start")
            out.append(Section(start, end, path, None if body is None else int(body)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(
                f"a section needs integer start/end and a list path, got {entry!r:.200}"
            ) from None
    return tuple(sorted(out, key=lambda s: (s.start, s.end)))


@dataclass(frozen=True)
class Piece:
    """One chunk's text and token count, and the heading path it sits under ("" for none)."""

    text: str
    tokens: int
    heading_path: str = ""


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that gets one vector."""

    id: str
    document_id: str
    position: int
    text: str
    metadata: dict[str, Any]
    content_hash: str
    metadata_hash: str
    tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def text_hash(text: str) -> str:
    """Content hash of a chunk: what the embedding depends on (the exact input text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def metadata_hash(metadata: dict[str, Any]) -> str:
    """Hash of a chunk's metadata, independent of key order."""
    payload = json.dumps(metadata, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def chunk_id(document_id: str, position: int) -> str:
    """Stable id of the ``position``-th chunk of a document."""
    if len(document_id) > MAX_ID_CHARS or not document_id.isascii():
        document_id = "h:" + hashlib.sha256(document_id.encode("utf-8")).hexdigest()[:32]
    return f"{document_id}#{position}"


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-empty ``[start, end)`` pieces of ``text[start:end]`` between matches of ``pattern``."""
    spans = []
    pos = start
    for match in pattern.finditer(text, start, end):
        if match.start() > pos:
            spans.append((pos, match.start()))
        pos = match.end()
    if pos < end:
        spans.append((pos, end))
    return spans


def _hard_cut(
    text: str, start: int, end: int, max_tokens: int, count: TokenCounter
) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into the longest prefixes that fit (binary search on chars)."""
    pieces = []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:  # largest cut with count <= max_tokens
            mid = (lo + hi + 1) // 2
            if count([text[start:mid]])[0] <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        pieces.append((start, lo))
        start = lo
    return pieces


_LEVELS = (_PARAGRAPH, _SENTENCE, _WORD)


def split_units(text: str, max_tokens: int, count: TokenCounter) -> list[tuple[int, int, int]]:
    """``(start, end, tokens)`` pieces of ``text``, each within ``max_tokens``.

    Paragraphs first; a paragraph over budget is split into sentences, a sentence into words,
    and a single word over budget is cut hard.
    """
    units: list[tuple[int, int, int]] = []

    def visit(spans: list[tuple[int, int]], level: int) -> None:
        counts = count([text[s:e] for s, e in spans])
        for (s, e), n in zip(spans, counts, strict=True):
            if n <= max_tokens:
                units.append((s, e, n))
            elif level < len(_LEVELS):
                finer = _spans(text, s, e, _LEVELS[level])
                if len(finer) > 1:
                    visit(finer, level + 1)
                else:
                    visit([(s, e)], level + 1)
            else:
                for cs, ce in _hard_cut(text, s, e, max_tokens, count):
                    units.append((cs, ce, count([text[cs:ce]])[0]))

    stripped = _spans(text, 0, len(text), re.compile(r"^\s+|\s+$"))
    if stripped:
        visit(stripped, 0)
    return units


def _break_strengths(text: str, units: list[tuple[int, int, int]]) -> list[int]:
    """How good a place to end a chunk the end of each unit is: 3 paragraph, 2 sentence,
    1 word, 0 inside a word (hard cut)."""
    out = []
    for k, (_, end, _) in enumerate(units):
        gap = text[end : units[k + 1][0]] if k + 1 < len(units) else "\n\n"
        if _PARAGRAPH.search(gap) or gap.count("\n") >= 2:
            out.append(3)
        elif text[end - 1 : end] in {".", "!", "?", "…", "。"} and gap:
            out.append(2)
        elif gap:
            out.append(1)
        else:
            out.append(0)
    return out


def split_text(
    text: str, max_tokens: int, overlap_tokens: int, count: TokenCounter
) -> list[tuple[str, int]]:
    """``(chunk text, tokens)`` for ``text``: verbatim slices of at most ``max_tokens`` tokens.

    Consecutive chunks share whole trailing pieces worth at most ``overlap_tokens`` tokens.
    """
    text_stripped = text.strip()
    if not text_stripped:
        return []
    whole = count([text_stripped])[0]
    if whole <= max_tokens:
        return [(text_stripped, whole)]
    units = split_units(text, max_tokens, count)
    strength = _break_strengths(text, units)
    chunks: list[tuple[str, int]] = []
    i, n = 0, len(units)
    while i < n:
        j, total = i, 0
        sizes = []
        while j < n and total + units[j][2] <= max_tokens:
            total += units[j][2]
            sizes.append(total)
            j += 1
        j = max(j, i + 1)
        if j < n:
            # Prefer ending on the strongest boundary (paragraph > sentence > word) among the
            # ends that still fill at least half the budget; the latest one among equals.
            candidates = [k for k in range(i + 1, j + 1) if sizes[k - i - 1] * 2 >= max_tokens]
            if candidates:
                j = max(candidates, key=lambda k: (strength[k - 1], k))
        # Token counts do not add exactly across piece boundaries: verify the joined slice.
        while True:
            piece = text[units[i][0] : units[j - 1][1]]
            tokens = count([piece])[0]
            if tokens <= max_tokens or j == i + 1:
                break
            j -= 1
        chunks.append((piece, tokens))
        if j >= n:
            break
        # Overlap: step back over trailing pieces while they fit the overlap and leave room
        # for the next new piece, so every chunk makes progress.
        k, carried = j, 0
        while k - 1 > i:
            size = units[k - 1][2]
            if carried + size > overlap_tokens or carried + size + units[j][2] > max_tokens:
                break
            carried += size
            k -= 1
        i = k
    return chunks


def chunk_document(
    text: str,
    title: str | None,
    config: ChunkerConfig,
    count: TokenCounter,
    sections: Sequence[Section] = (),
) -> list[tuple[str, int]]:
    """``(chunk text, tokens)`` of one document: :func:`chunk_pieces` without heading paths."""
    return [(p.text, p.tokens) for p in chunk_pieces(text, title, config, count, sections)]


def chunk_pieces(
    text: str,
    title: str | None,
    config: ChunkerConfig,
    count: TokenCounter,
    sections: Sequence[Section] = (),
) -> list[Piece]:
    """The chunks of one document; along its ``sections`` when configured and it has some.

    Without sections (or with ``config.sections`` off) this is :func:`chunk_plain`.
    """
    if not (config.sections and sections):
        return [Piece(t, n) for t, n in chunk_plain(text, title, config, count)]
    return chunk_by_sections(text, title, config, count, sections)


def chunk_plain(
    text: str,
    title: str | None,
    config: ChunkerConfig,
    count: TokenCounter,
) -> list[tuple[str, int]]:
    """``(chunk text, tokens)`` of one document, title prepended where configured.

    With ``prepend_title``, every chunk reads ``<title>\n\n<piece>``; a text that already
    starts with its title (``text_columns: [title, body]``) has it taken off first, so it is not
    chunked twice. A title that would take more than half the budget is not prepended.
    """
    budget = config.max_tokens
    prefix = ""
    body = text
    if config.prepend_title and title and title.strip():
        prefix = title.strip() + TITLE_SEPARATOR
        prefix_tokens = count([prefix])[0]
        if prefix_tokens <= config.max_tokens // 2:
            budget = config.max_tokens - prefix_tokens
            stripped, head = text.strip(), title.strip()
            rest = stripped[len(head) :]
            if stripped.startswith(head) and (not rest or rest[0].isspace()):
                body = rest
        else:
            prefix = ""
    overlap = min(config.overlap_tokens, budget // 2)
    pieces = split_text(body, budget, overlap, count)
    if not prefix:
        return pieces
    texts = [prefix + piece for piece, _ in pieces]
    return list(zip(texts, count(texts), strict=True)) if texts else []


@dataclass
class _Span:
    """A stretch of text chunked on its own: one section, or small ones merged."""

    start: int
    end: int
    path: tuple[str, ...]
    tokens: int


def _common_path(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    shared = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared.append(x)
    return tuple(shared)


def _spans_of(
    text: str,
    title: str | None,
    sections: Sequence[Section],
    skip_heading_lines: bool,
    count: TokenCounter,
) -> list[_Span]:
    """The document cut at its sections: the text before the first one (the title taken off
    its start, as :func:`chunk_plain` does), then each section; empty ones dropped."""
    bounds: list[tuple[int, int, tuple[str, ...]]] = []
    first = min(s.start for s in sections)
    head = title.strip() if title else ""
    lead = len(text) - len(text.lstrip())
    preamble_start = lead
    if head and text[lead:].startswith(head):
        rest = text[lead + len(head) : first]
        if not rest or rest[0].isspace():
            preamble_start = lead + len(head)
    bounds.append((preamble_start, first, ()))
    for k, section in enumerate(sections):
        start = section.start
        if skip_heading_lines and section.text_start is not None:
            start = section.text_start
        # Sections do not overlap: each ends at the latest where the next one starts.
        end = min(section.end, sections[k + 1].start) if k + 1 < len(sections) else section.end
        bounds.append((max(start, section.start), max(end, start), section.path))
    kept = [(s, e, p) for s, e, p in bounds if text[s:e].strip()]
    counts = count([text[s:e].strip() for s, e, _ in kept])
    return [_Span(s, e, p, n) for (s, e, p), n in zip(kept, counts, strict=True)]


def _merge_small(spans: list[_Span], budget: int, text: str, count: TokenCounter) -> list[_Span]:
    """Join each section under a quarter of ``budget`` to its neighbour when both fit."""
    small = budget // SMALL_SECTION_SHARE
    merged: list[_Span] = []
    for span in spans:
        if merged:
            last = merged[-1]
            if (last.tokens < small or span.tokens < small) and (
                last.tokens + span.tokens <= budget
            ):
                tokens = count([text[last.start : span.end].strip()])[0]
                if tokens <= budget:
                    merged[-1] = _Span(
                        last.start, span.end, _common_path(last.path, span.path), tokens
                    )
                    continue
        merged.append(span)
    return merged


def _heading_prefix(title: str | None, path: tuple[str, ...], config: ChunkerConfig) -> str:
    """``<title> > <heading> > ...`` (a first heading equal to the title is not repeated)."""
    parts = [title.strip()] if config.prepend_title and title and title.strip() else []
    for heading in path if config.heading_prefix else ():
        if not parts or heading.casefold() != parts[-1].casefold():
            parts.append(heading)
    return PATH_SEPARATOR.join(parts)


def chunk_by_sections(
    text: str,
    title: str | None,
    config: ChunkerConfig,
    count: TokenCounter,
    sections: Sequence[Section],
) -> list[Piece]:
    """The chunks of a document cut along its sections first.

    Each section (small ones merged with a neighbour, :func:`_merge_small`) is split as
    :func:`split_text` splits a whole text, within the budget left by its prefix: the title,
    and with ``heading_prefix`` the heading path (then the heading's own line is left out of
    the piece, the prefix says it). A prefix over half the budget loses its top headings, then
    the title, as :func:`chunk_plain` drops a title that long.
    """
    spans = _spans_of(text, title, sections, config.heading_prefix, count)
    spans = _merge_small(spans, config.max_tokens * 3 // 4, text, count)
    pieces: list[Piece] = []
    for span in spans:
        path = span.path
        prefix = _heading_prefix(title, path, config)
        while prefix and count([prefix + TITLE_SEPARATOR])[0] > config.max_tokens // 2:
            if path:
                path = path[1:]
                prefix = _heading_prefix(title, path, config)
            else:
                prefix = ""
        prefix = prefix + TITLE_SEPARATOR if prefix else ""
        budget = config.max_tokens - (count([prefix])[0] if prefix else 0)
        overlap = min(config.overlap_tokens, budget // 2)
        body = split_text(text[span.start : span.end], budget, overlap, count)
        texts = [prefix + piece for piece, _ in body]
        heading_path = PATH_SEPARATOR.join(span.path)[:MAX_HEADING_PATH_CHARS]
        for chunk, tokens in zip(texts, count(texts) if texts else [], strict=True):
            pieces.append(Piece(chunk, tokens, heading_path))
    return pieces
