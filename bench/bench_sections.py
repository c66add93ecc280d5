"""Section-aware chunks on real documentation (issue 19, item 3): recall with sections on vs off.

Pages of Debian documentation trees (``tests/sources/debian_docs.py``: git-doc,
python-jinja2-doc, debian-faq, downloaded once into ``.data/test-cache/``) are parsed by the
product's web source (:func:`tasks.ingest.sources.web.helpers.parse_page`), turned into documents
as docs/sources.md's recipe does (``text_columns: [title, body]``, ``sections_column``), chunked
with each chunker configuration, embedded with the configured model (default: the local
MiniLM) and searched exactly (cosine over all chunks, a page ranked by its best chunk).

Labels nobody here wrote, read from the pages themselves:

- ``title``: the page's ``<title>`` is the query, the page the answer (every chunk carries the
  title in both configurations, so this mostly measures how much the rest of a chunk dilutes it);
- ``name``: for each git manual page, its NAME line's description ("List, create, or delete
  branches" for git-branch(1)) is the query. trafilatura drops that line from the stored text,
  so the query is not in any chunk.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_sections.py [--max-pages N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import numpy as np

from tasks.embedders import get_embedder
from tasks.index.chunking import ChunkerConfig, Section, chunk_pieces, sections_from_json
from tasks.ingest.sources.web.helpers import decode_html, parse_page
from tasks.search.evaluation import recall_at_k, reciprocal_rank
from tasks.settings import get_settings
from tests.sources.debian_docs import TREES, fetch_tree, reachable

CONFIGS = {
    "off (today)": dict(sections=False, heading_prefix=False),
    "sections": dict(sections=True, heading_prefix=False),
    "sections + heading prefix": dict(sections=True, heading_prefix=True),
}


@dataclass(frozen=True)
class Doc:
    """One page as the documents model gives it: ``title\\n\\nbody`` and shifted sections."""

    id: str
    title: str
    text: str
    sections: tuple[Section, ...]
    name_line: str | None


def name_description(path: Path) -> str | None:
    """The description of a git manual page's NAME line (after ``git-x - ``), read by lxml."""
    tree = lxml.html.fromstring(path.read_bytes())
    for heading in tree.xpath("//h2"):
        if heading.text_content().strip() == "NAME":
            nxt = heading.getnext()
            line = " ".join(nxt.text_content().split()) if nxt is not None else ""
            _, _, description = line.partition(" - ")
            return description or None
    return None


def load_docs(max_pages: int | None) -> list[Doc]:
    """Every reachable page of the trees as a document (``web:<url>``)."""
    docs = []
    for tree in TREES.values():
        root = fetch_tree(tree)
        found = reachable(root, "http://docs.test", tree.seed)
        for url, path in sorted(found.pages.items())[:max_pages]:
            _, html = decode_html(path.read_bytes(), "text/html")
            page = parse_page(html, url)
            title = page.title or url
            body = page.text.strip()
            text = f"{title}\n\n{body}"
            offset = len(text) - len(body)
            sections = tuple(
                s.shifted(offset, len(text)) for s in sections_from_json(page.sections)
            )
            name = name_description(path) if tree.package == "git-doc" else None
            docs.append(Doc(f"web:{url}", title, text, sections, name))
    return docs


def evaluate(
    vectors: np.ndarray, owners: list[str], queries: list[tuple[str, str]], embed: object
) -> dict[str, float]:
    """recall@1/5 and MRR of pages ranked by their best chunk, exact cosine."""
    texts = [q for q, _ in queries]
    qv = np.asarray(embed(texts), dtype=np.float32)  # type: ignore[operator]
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    scores = qv @ vectors.T
    r1 = r5 = mrr = 0.0
    for row, (_, answer) in zip(scores, queries, strict=True):
        ranked, seen = [], set()
        for k in np.argsort(-row):
            doc = owners[k]
            if doc not in seen:
                seen.add(doc)
                ranked.append(doc)
            if len(ranked) >= 50:
                break
        r1 += recall_at_k(ranked, {answer}, 1)
        r5 += recall_at_k(ranked, {answer}, 5)
        mrr += reciprocal_rank(ranked, {answer})
    n = len(queries)
    return {"recall@1": r1 / n, "recall@5": r5 / n, "MRR": mrr / n}


def main(argv: Sequence[str] | None = None) -> None:
    """Print chunk counts and the scores per label set and configuration (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-pages", type=int, default=None, help="pages per tree")
    parser.add_argument(
        "--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), help="to compare"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    embedder = get_embedder(settings)
    docs = load_docs(args.max_pages)
    label_sets = {
        "title": [(d.title, d.id) for d in docs],
        "name": [(d.name_line, d.id) for d in docs if d.name_line],
    }
    print(f"{len(docs)} pages, {sum(bool(d.sections) for d in docs)} with sections", flush=True)
    print("| configuration | chunks | labels | queries | recall@1 | recall@5 | MRR | embed s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.configs:
        switches = CONFIGS[name]
        config = ChunkerConfig(
            max_tokens=min(256, embedder.max_input_tokens),
            overlap_tokens=settings.chunk_overlap_tokens,
            prepend_title=True,
            **switches,
        )
        texts, owners = [], []
        for doc in docs:
            for piece in chunk_pieces(
                doc.text, doc.title, config, embedder.count_tokens, doc.sections
            ):
                texts.append(piece.text)
                owners.append(doc.id)
        started = time.perf_counter()
        vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
        seconds = time.perf_counter() - started
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for labels, queries in label_sets.items():
            s = evaluate(vectors, owners, queries, embedder.embed)
            print(
                f"| {name} | {len(texts)} | {labels} | {len(queries)} | {s['recall@1']:.3f} | "
                f"{s['recall@5']:.3f} | {s['MRR']:.3f} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
