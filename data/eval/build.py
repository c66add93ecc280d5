"""Build the real-corpus evaluation sets from documentation trees that Debian packages ship.

Each set labels a query with the page that answers it, using only the tree's own structure
(nobody here wrote a query or chose an answer):

- ``git-doc``: every manual page of git's documentation (``git-doc``) has a NAME section,
  ``git-add - Add file contents to the index``; the description after `` - `` is the query
  (the command name is left out so the query does not spell out the page's file name), the page
  is the answer. Corpus: every page reachable from ``git.html`` (the manual pages, the guides
  and the user manual).
- ``python-library``: every module page of the Python 3.11 library reference
  (``python3.11-doc``) is titled ``zipfile — Work with ZIP archives``; the synopsis after the
  em dash is the query, the page is the answer. Corpus: every page reachable from
  ``library/index.html`` inside ``library/`` (module pages, chapter pages, how-tos of asyncio...).

Answers are document ids in the form the product gives crawled pages (``'web:' || url``, see
docs/sources.md "Using crawled pages as documents to embed") with the server's origin left as
the placeholder ``{origin}``: ``web:{origin}/git-add.html``. The crawl serves the tree from a
local static server on an ephemeral port, so whoever runs a set substitutes that server's
origin (``bench/bench_real_corpora.py`` does). Queries that several pages share are labelled
with all of them. Pages not reachable from the corpus's seed are not labelled.

Writes ``<set>.jsonl`` (the query-file format of ``tasks/search/evaluation.py``, plus a
``page`` field with the answer's path, which the loader ignores) and ``corpora.json`` (how to
fetch, serve and crawl each tree) next to this file. The packages are downloaded once with
``apt-get download`` and unpacked into ``.data/test-cache/debian-docs`` (see
``tests/sources/debian_docs.py``).

    PYTHONPATH=$PWD .venv/bin/python data/eval/build.py
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import lxml.html

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.sources.debian_docs import DocTree, fetch_tree, reachable  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent
#: Stands for the static server's origin in the labels (``http://127.0.0.1:<port>``).
ORIGIN = "{origin}"
#: Any origin works for working out reachability from the files on disk.
DISK_ORIGIN = "http://127.0.0.1:1"


@dataclass(frozen=True)
class CorpusSpec:
    """One evaluation set: the Debian package, how its tree is crawled, and the label file."""

    name: str
    package: str
    #: Folder inside the unpacked package that the static server serves as ``/``.
    root: str
    #: Page the crawl starts from, relative to ``root``.
    seed: str
    #: The web source's ``include_patterns`` (URL regexes to keep); empty: the whole site.
    include_patterns: tuple[str, ...]
    #: The label file next to this script.
    queries: str
    #: How the query is read from a page (documentation only: the code is below).
    label_rule: str

    @property
    def tree(self) -> DocTree:
        """The tree for ``tests.sources.debian_docs.fetch_tree``."""
        return DocTree(self.package, self.root, self.seed)


CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec(
            name="git-doc",
            package="git-doc",
            root="usr/share/doc/git-doc",
            seed="git.html",
            include_patterns=(),
            queries="git-doc.jsonl",
            label_rule="NAME section of each manual page, the description after ' - '",
        ),
        CorpusSpec(
            name="python-library",
            package="python3.11-doc",
            root="usr/share/doc/python3.11/html",
            seed="library/index.html",
            include_patterns=("/library/",),
            queries="python-library.jsonl",
            label_rule="<h1> of each module page 'module — synopsis', the synopsis",
        ),
    )
}


def _collapse(text: str) -> str:
    return " ".join(text.split())


def git_name_line(page: lxml.html.HtmlElement) -> str | None:
    """The description of a git manual page's NAME section (``git-add - <this>``), if any."""
    for heading in page.xpath("//h2"):
        if _collapse(heading.text_content()) != "NAME":
            continue
        body = heading.getnext()
        if body is None:
            return None
        name, sep, description = _collapse(body.text_content()).partition(" - ")
        return description.strip() or None if sep and name else None
    return None


#: ``zipfile — Work with ZIP archives¶``: module name(s), an em dash, the synopsis.
_MODULE_H1 = re.compile(r"^(?P<module>[\w.]+(?:\s*(?:,|and)\s*[\w.]+)*)\s+—\s+(?P<synopsis>.+)$")


def python_synopsis(page: lxml.html.HtmlElement) -> str | None:
    """The synopsis of a library reference module page (``<h1>zipfile — <this></h1>``)."""
    headings = page.xpath("//h1")
    if not headings:
        return None
    # Sphinx ends the heading with a pilcrow permalink.
    text = _collapse(headings[0].text_content()).rstrip("¶").strip()
    match = _MODULE_H1.match(text)
    return match.group("synopsis").strip() if match else None


LABELLERS: dict[str, Callable[[lxml.html.HtmlElement], str | None]] = {
    "git-doc": git_name_line,
    "python-library": python_synopsis,
}


def corpus_pages(spec: CorpusSpec, root: Path) -> dict[str, Path]:
    """Path (relative to the served root) -> file of every page the corpus's crawl stores.

    Pages reachable from the seed, kept by the include patterns. The crawl also follows only
    links the patterns keep, so a page reached only through an excluded one would be missed
    here: the suite checks that every labelled answer is in the index
    (tests/search/test_real_corpora.py).
    """
    found = reachable(root, DISK_ORIGIN, spec.seed)
    pages: dict[str, Path] = {}
    for url, path in found.pages.items():
        if spec.include_patterns and not any(re.search(p, url) for p in spec.include_patterns):
            continue
        pages[url.removeprefix(DISK_ORIGIN + "/")] = path
    return pages


def build(spec: CorpusSpec) -> tuple[int, int]:
    """Write ``spec``'s label file; returns (corpus pages, queries)."""
    root = fetch_tree(spec.tree)
    pages = corpus_pages(spec, root)
    by_query: dict[str, list[str]] = defaultdict(list)
    label = LABELLERS[spec.name]
    for relative in sorted(pages):
        query = label(lxml.html.fromstring(pages[relative].read_bytes()))
        if query:
            by_query[query].append(relative)
    lines = [
        json.dumps(
            {
                "query": query,
                "relevant_ids": [f"web:{ORIGIN}/{p}" for p in answers],
                "filter": None,
                "page": answers[0],
            },
            ensure_ascii=False,
        )
        for query, answers in sorted(by_query.items(), key=lambda item: item[1][0])
    ]
    (OUT_DIR / spec.queries).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(pages), len(lines)


def main() -> None:
    """Build every set and the manifest; print what was written."""
    manifest = {}
    for spec in CORPORA.values():
        pages, queries = build(spec)
        manifest[spec.name] = asdict(spec) | {"pages": pages, "query_count": queries}
        print(f"{spec.name}: {queries} queries over {pages} pages -> {spec.queries}")
    (OUT_DIR / "corpora.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
