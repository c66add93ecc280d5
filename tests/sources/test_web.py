"""Web kind: a small multi-page site on 127.0.0.1 with links, robots.txt and ETags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.errors import SourceError
from tasks.ingest.sources.web.helpers import OutlineHeading, page_sections
from tests.sources.conftest import completed_count, ingest, query, write_sources
from tests.sources.servers import LocalServer

PAGE = """<!doctype html><html lang="en"><head><title>{title}</title>
<link rel="canonical" href="{canonical}"><script>var tracking = "SCRIPT-NOISE";</script></head>
<body><nav><a href="/index.html">Home</a> <a href="/about.html">About us NAV-NOISE</a></nav>
<main><h1>{title}</h1><p>{body} This paragraph is long enough to be the main content of the
page, so the extractor keeps it and drops the navigation and the scripts around it.</p>
<h2>Details</h2><p>More text about {title} for readers who want the details of this page.</p>
{links}</main><footer>Copyright FOOTER-NOISE</footer></body></html>"""


def page(title: str, links: list[str], body: str = "Welcome.") -> str:
    anchors = " ".join(f'<a href="{href}">{href}</a>' for href in links)
    return PAGE.format(title=title, canonical=f"/{title.lower()}.html", body=body, links=anchors)


@pytest.fixture
def site(file_server: tuple[LocalServer, Path]) -> tuple[LocalServer, Path]:
    server, root = file_server
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (root / "private").mkdir()
    (root / "private" / "secret.html").write_text(page("Secret", []))
    pages = {
        "index": [
            "a.html",
            "/b.html#top",
            "/private/secret.html",
            "http://example.com/x",
            "mailto:me@example.com",
            f"/redirect?to=http://localhost:{server.port}/d.html",  # leaves the allowed host
        ],
        "a": ["c.html"],
        "b": ["index.html"],
        "c": ["d.html"],
        "d": [],
    }
    for name, links in pages.items():
        (root / f"{name}.html").write_text(page(name.capitalize(), links, f"Page {name}."))
    return server, root


def web_sources(server: LocalServer, extra: str = "") -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{server.url}/index.html"]
    max_depth: 2
    delay_s: 0
    allow_private_addresses: true
    http: {{backoff_s: 0.01, max_attempts: 2, user_agent: "test-crawler/1.0"}}
{extra}"""


def test_crawl_respects_depth_robots_and_domains_then_recrawls_cheaply(
    site: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
) -> None:
    server, root = site
    sources = write_sources(tmp_path, web_sources(server))

    first = ingest(env, sources, "site")

    # index, a, b (depth 1), c (depth 2); the nav's /about.html is a dead link (a dead letter).
    assert first.rows_by_table == {"pages": 4, "pages__rejected": 1}
    urls = {r[0] for r in query(database_url, "select url from raw_data.pages")}
    assert urls == {f"{server.url}/{n}.html" for n in ("index", "a", "b", "c")}
    assert server.hits("/private/secret.html") == []  # robots.txt
    assert server.hits("/d.html") == []  # max_depth, and a redirect to another host
    assert len(server.hits("/redirect")) == 1
    assert len(server.hits("/robots.txt")) == 1
    assert all(r.headers["user-agent"] == "test-crawler/1.0" for r in server.requests)
    ((title, canonical, text, headings, depth, sections),) = query(
        database_url,
        "select title, canonical_url, text, headings, depth, sections from raw_data.pages "
        f"where url = '{server.url}/a.html'",
    )
    assert (title, canonical, depth) == ("A", f"{server.url}/a.html", 1)
    assert "main content of the page" in text
    for noise in ("SCRIPT-NOISE", "NAV-NOISE", "FOOTER-NOISE"):
        assert noise not in text
    heads = headings if isinstance(headings, list) else json.loads(headings)
    assert {"level": "h2", "text": "Details"} in heads
    spans = sections if isinstance(sections, list) else json.loads(sections)
    assert [s["path"] for s in spans] == [["A"], ["A", "Details"]]
    details = spans[1]
    assert text[details["start"] : details["text_start"]] == "Details"
    assert text[details["text_start"] : details["end"]].strip().startswith("More text about A")

    # Second crawl: conditional requests, 304s, nothing re-stored; links still followed.
    server.clear()
    second = ingest(env, sources, "site")
    assert second.rows_by_table == {"pages__rejected": 1}  # about.html is still dead
    assert all("if-none-match" in r.headers for r in server.hits("/c.html"))
    assert len(server.hits("/c.html")) == 1

    # A changed page is the only one re-stored.
    (root / "b.html").write_text(page("B", ["index.html"], "Page b, now updated."))
    third = ingest(env, sources, "site")
    assert third.rows_by_table == {"pages": 1, "pages__rejected": 1}
    assert completed_count(database_url, "pages", "url") == (4, 4)
    ((text,),) = query(
        database_url, f"select text from raw_data.pages where url = '{server.url}/b.html'"
    )
    assert "now updated" in text


def test_max_pages_and_exclude_patterns(
    site: tuple[LocalServer, Path], env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    server, _ = site
    sources = write_sources(
        tmp_path,
        web_sources(server, '    max_pages: 2\n    exclude_patterns: ["/a\\\\.html$", "about"]\n'),
    )
    assert ingest(env, sources, "site").rows_by_table == {"pages": 2}
    urls = {r[0] for r in query(database_url, "select url from raw_data.pages")}
    assert urls == {f"{server.url}/index.html", f"{server.url}/b.html"}
    assert server.hits("/a.html") == []


def test_politeness_delay_and_robots_crawl_delay(
    file_server: tuple[LocalServer, Path], tmp_path: Path
) -> None:
    """The pause asked between two requests to a host: robots.txt's Crawl-delay when longer."""
    from tasks.ingest.sources.config import WebSourceConfig
    from tasks.ingest.sources.web.helpers import Crawler

    server, root = file_server
    (root / "robots.txt").write_text("User-agent: *\nCrawl-delay: 30\n")
    for name, links in {"index": ["a.html"], "a": []}.items():
        (root / f"{name}.html").write_text(page(name.capitalize(), links))
    config = WebSourceConfig.model_validate(
        {
            "name": "site",
            "kind": "web",
            "seeds": [f"{server.url}/index.html"],
            "delay_s": 0.5,
            "allow_private_addresses": True,
        }
    )
    pauses: list[float] = []
    crawler = Crawler(config, {}, sleep=pauses.append)
    with crawler.session:
        rows = list(crawler.crawl())

    # (The nav's /about.html is a dead link: a dead letter, not a page.)
    assert [r["title"] for r in rows if isinstance(r, dict)] == ["Index", "A"]
    # One pause before every request but the first (robots.txt), each close to the 30 s of
    # Crawl-delay rather than delay_s (0.5 s).
    assert len(pauses) == len(server.requests) - 1 >= 2
    assert all(25 < p <= 30 for p in pauses)


def test_pages_without_validators_are_compared_by_content_hash(
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
) -> None:
    from tests.sources.servers import Reply

    server, root = file_server
    body = {"text": page("Plain", [], "First version.")}
    server.routes["/plain.html"] = lambda request: Reply(
        200, body["text"], content_type="text/html; charset=utf-8"
    )
    text = web_sources(server).replace("/index.html", "/plain.html")
    sources = write_sources(tmp_path, text)

    dead = {"pages__rejected": 2}  # the nav's /index.html and /about.html do not exist here
    assert ingest(env, sources, "site").rows_by_table == {"pages": 1, **dead}
    assert ingest(env, sources, "site").rows_by_table == dead  # fetched again, same text hash
    assert len(server.hits("/plain.html")) == 2
    assert "if-none-match" not in server.hits("/plain.html")[1].headers

    body["text"] = page("Plain", [], "Second version.")
    assert ingest(env, sources, "site").rows_by_table == {"pages": 1, **dead}
    assert completed_count(database_url, "pages", "url") == (1, 1)


def test_a_page_that_is_gone_is_deleted_and_comes_back_when_restored(
    site: tuple[LocalServer, Path], env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    server, root = site
    sources = write_sources(tmp_path, web_sources(server))
    ingest(env, sources, "site")
    c_url = f"{server.url}/c.html"
    assert query(database_url, f"select count(*) from raw_data.pages where url = '{c_url}'") == [
        (1,)
    ]

    saved = (root / "c.html").read_text()
    (root / "c.html").unlink()  # now a 404, still linked from a.html
    ingest(env, sources, "site")
    assert completed_count(database_url, "pages", "url") == (3, 3)
    assert query(database_url, f"select count(*) from raw_data.pages where url = '{c_url}'") == [
        (0,)
    ]

    (root / "c.html").write_text(saved)
    ingest(env, sources, "site")
    assert completed_count(database_url, "pages", "url") == (4, 4)
    assert query(database_url, "select count(*) from raw_data.pages where deleted") == [(0,)]


def test_a_seed_that_is_gone_fails_the_load_and_deletes_nothing(
    site: tuple[LocalServer, Path], env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """A site answering 404 everywhere (an outage, a bad deploy) must not empty the table."""
    server, root = site
    sources = write_sources(tmp_path, web_sources(server))
    ingest(env, sources, "site")
    (root / "index.html").unlink()

    with pytest.raises(SourceError, match=r"index\.html: HTTP 404"):
        ingest(env, sources, "site")
    assert completed_count(database_url, "pages", "url") == (4, 4)


SECTION_CASES = [
    # (name, outline as (level, heading, text after it), stored text, expected (path, start,
    # text_start, end))
    (
        "headings kept as lines",
        [(1, "Guide", "Intro text."), (2, "Setup", "Install it.")],
        "Guide\nIntro text.\nSetup\nInstall it.",
        [(["Guide"], 0, 5, 18), (["Guide", "Setup"], 18, 23, 35)],
    ),
    (
        "headings dropped from the text: found by the text after them",
        [(1, "Guide", "Intro text."), (2, "Setup", "Install   it\nnow.")],
        "Intro text.\nInstall it now.",
        [(["Guide"], 0, 0, 12), (["Guide", "Setup"], 12, 12, 27)],
    ),
    (
        "navigation before the main text is not a section",
        [(3, "Navigation", "Home About"), (1, "Guide", "Intro text.")],
        "Guide\nIntro text.",
        [(["Guide"], 0, 5, 17)],
    ),
    (
        "a chapter title dropped with its table of contents stays a parent",
        [
            (1, "Intro", "First words."),
            (1, "Chapter 1", "1.1 Setup 1.2 Use"),
            (2, "1.1 Setup", "Install it."),
        ],
        "First words.\nInstall it.",
        [(["Intro"], 0, 0, 13), (["Chapter 1", "1.1 Setup"], 13, 13, 24)],
    ),
    (
        "a heading alone counts only as a line of its own; Sphinx pilcrows leave the path",
        [(1, "Tests¶", ""), (2, "Use", "")],
        "Tests¶\nUse the tests.\nUse",
        [(["Tests"], 0, 6, 22), (["Tests", "Use"], 22, 25, 25)],
    ),
    ("no headings", [], "Just text.", []),
]


@pytest.mark.parametrize(
    ("outline", "text", "expected"),
    [c[1:] for c in SECTION_CASES],
    ids=[c[0] for c in SECTION_CASES],
)
def test_page_sections(
    outline: list[tuple[int, str, str]],
    text: str,
    expected: list[tuple[list[str], int, int, int]],
) -> None:
    sections = page_sections([OutlineHeading(*h) for h in outline], text)
    assert [(s["path"], s["start"], s["text_start"], s["end"]) for s in sections] == expected
