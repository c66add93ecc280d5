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
from urllib.parse import urlsplit

import pytest

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

        # Second crawl: every page answers 304 to its If-Modified-Since; nothing is stored.
        server.log.clear()
        second = ingest(env, sources, "docs")
        assert "pages" not in second.rows_by_table
        page_paths = {urlsplit(url).path for url in expected.pages}
        page_hits = [(path, status) for path, status in server.log if path in page_paths]
        assert {path for path, _ in page_hits} == page_paths
        assert all(status == 304 for _, status in page_hits), page_hits
