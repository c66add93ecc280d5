"""Web kind on real documentation trees shipped by Debian packages (issue 12, item 4).

Each tree is served by Python's static file server, which sends ``Content-Type: text/html``
without a charset, and crawled by the product's web source through the real ingest into the
embedded Postgres. What the crawl must find is computed independently from the files on disk
(tests/sources/debian_docs.py). The packages are downloaded once (apt-get download + dpkg -x)
and cached under ``.data/test-cache/``; without apt-get the test fails, it is never skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pytest

from tasks.embedders.openai import tiktoken_encoding
from tasks.index.chunking import ChunkerConfig, chunk_pieces, sections_from_json
from tests.sources.conftest import ingest, query, write_sources
from tests.sources.debian_docs import (
    TREES,
    StaticServer,
    characters_of,
    fetch_tree,
    reachable,
    title_of,
)

#: Mojibake: C1 controls (a UTF-8 byte read as ISO-8859-1), the usual UTF-8-read-as-latin-1 or
#: windows-1252 sequences, and replacement characters.
C1 = [chr(c) for c in range(0x80, 0xA0)]
MOJIBAKE_SEQUENCES = ["Ã", "Â", "â€", "\ufffd"]


@pytest.fixture(scope="session")
def doc_trees() -> dict[str, Path]:
    """The served folder of every tree in :data:`TREES` (downloaded on first use)."""
    try:
        return {name: fetch_tree(tree) for name, tree in TREES.items()}
    except RuntimeError as exc:
        pytest.fail(f"Could not get the Debian documentation packages: {exc}")


@pytest.mark.parametrize("name", sorted(TREES))
def test_crawl_of_a_real_doc_tree_stores_every_reachable_page_intact(
    name: str,
    doc_trees: dict[str, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
) -> None:
    root = doc_trees[name]
    tree = TREES[name]
    with StaticServer(root) as server:
        expected = reachable(root, server.url, tree.seed)
        assert len(expected.pages) >= 15  # a real tree, not just its seed
        sources = write_sources(
            tmp_path,
            f"""
sources:
  - name: docs
    kind: web
    seeds: ["{server.url}/{tree.seed}"]
    max_pages: 5000
    max_depth: 1000
    delay_s: 0
    allow_private_addresses: true
    http: {{backoff_s: 0.01, max_attempts: 2}}
""",
        )

        first = ingest(env, sources, "docs")

        rows = query(database_url, "select url, title, text from raw_data.pages")
        sections = dict(query(database_url, "select url, sections from raw_data.pages"))
        assert first.rows_by_table.get("pages") == len(rows)
        assert {url for url, _, _ in rows} == set(expected.pages)
        # Links to files the package does not ship are dead letters, each with its 404.
        assert first.rows_by_table.get("pages__rejected", 0) == len(expected.missing)
        if expected.missing:
            rejected = query(
                database_url, "select origin, raw_record from raw_data.pages__rejected"
            )
            assert {origin for origin, _ in rejected} == expected.missing
            assert all(json.loads(record)["status"] == 404 for _, record in rejected)

        for url, title, text in rows:
            path = expected.pages[url]
            on_disk = path.read_bytes().decode("utf-8", errors="replace")
            assert (title or "") == title_of(path), url
            stored = (title or "") + (text or "")
            assert not [c for c in C1 if c in stored], url
            assert not [s for s in MOJIBAKE_SEQUENCES if s in stored and s not in on_disk], url
            # Every non-ASCII character stored is one the page has (nothing was mis-decoded).
            assert {c for c in stored if ord(c) > 127} <= characters_of(path), url
        # The trees do carry non-ASCII text (en dashes, curly quotes, no-break spaces...).
        assert any(any(ord(c) > 127 for c in (text or "")) for _, _, text in rows)
        check_sections(rows, sections, expected.pages)

        # Second crawl: every page answers 304 to its If-Modified-Since; nothing is stored.
        server.log.clear()
        second = ingest(env, sources, "docs")
        assert "pages" not in second.rows_by_table
        page_paths = {urlsplit(url).path for url in expected.pages}
        page_hits = [(path, status) for path, status in server.log if path in page_paths]
        assert {path for path, _ in page_hits} == page_paths
        assert all(status == 304 for _, status in page_hits), page_hits


def squeeze(text: str) -> str:
    """Letters and digits of ``text`` only: trafilatura re-flows whitespace and marks list
    items with ``- ``, so the stored text and the file compare on these."""
    return "".join(c for c in text if c.isalnum())


def headings_on_disk(path: Path) -> list[tuple[int, str, int]]:
    """``(level, heading, position in the squeezed page text)`` of every h1-h6 of the file,
    read by lxml from the bytes (not the product's reading), permalink pilcrows dropped."""
    tree = lxml.html.fromstring(path.read_bytes())
    page = squeeze(tree.text_content())
    out, cursor = [], 0
    for element in tree.xpath("//h1|//h2|//h3|//h4|//h5|//h6"):
        text = " ".join(element.text_content().split())
        if not text:
            continue
        at = page.find(squeeze(text), cursor)
        cursor = max(cursor, at)
        out.append((int(element.tag[1]), text.rstrip("¶§# ").strip() or text, at))
    return out


def check_sections(
    rows: list[tuple[str, str | None, str | None]],
    stored: dict[str, Any],
    files: dict[str, Path],
) -> None:
    """Every stored section path is a chain of real headings of the file, in the file's order
    and nesting; sections follow the file's heading order; each section's text is the text
    after its heading in the file; the chunker's prefixes name those headings."""
    encoding = tiktoken_encoding()
    assert encoding is not None

    def count(texts: Any) -> list[int]:
        return [len(encoding.encode_ordinary(t)) for t in texts]

    config = ChunkerConfig(max_tokens=254, overlap_tokens=32, sections=True, heading_prefix=True)
    pages_with_headings = pages_with_sections = checked = text_matches = 0
    for url, title, text in rows:
        text = text or ""
        raw = stored[url]
        sections = raw if isinstance(raw, list) else json.loads(raw or "[]")
        disk = headings_on_disk(files[url])
        names = [name for _, name, _ in disk]
        pages_with_headings += bool(disk)
        pages_with_sections += bool(sections)
        cursor, page = 0, squeeze(lxml.html.fromstring(files[url].read_bytes()).text_content())
        previous_end = 0
        for section in sections:
            assert 0 <= section["start"] <= section["text_start"] <= section["end"] <= len(text)
            assert section["start"] >= previous_end, url  # in text order, no overlap
            previous_end = section["end"]
            path = section["path"]
            assert path[-1] == section["heading"], url
            # Its own heading: the next one of that name in the file. Its path: the file's chain
            # of nearest headings of a higher level above it (the product drops headings before
            # the first section, a site header: so the path may be the chain's tail).
            own = next(i for i in range(cursor, len(names)) if names[i] == path[-1])
            cursor, chain, index = own + 1, [names[own]], own
            for i in range(own - 1, -1, -1):
                if disk[i][0] < disk[index][0]:
                    chain.insert(0, names[i])
                    index = i
            assert chain[-len(path) :] == path, (url, path, chain)
            body = squeeze(text[section["text_start"] : section["end"]])[:30]
            if body:  # a heading directly over its first sub-heading has no text of its own
                checked += 1
                text_matches += page.find(body, disk[own][2]) >= 0
        for piece in chunk_pieces(text, title, config, count, sections_from_json(sections)):
            prefix, _, _ = piece.text.partition("\n\n")
            if piece.heading_path:
                named = prefix.split(" > ")[1:] if title else prefix.split(" > ")
                assert set(named) <= set(names), (url, prefix)
    # Most pages with headings have sections, and nearly every section starts where the file's
    # text after its heading does (trafilatura unescapes or drops a few text starts).
    assert pages_with_sections >= 0.8 * pages_with_headings, (
        pages_with_sections,
        pages_with_headings,
    )
    assert checked and text_matches >= 0.95 * checked, (text_matches, checked)
