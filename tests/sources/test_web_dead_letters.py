"""Web kind: one bad page does not sink a crawl (issue 12, item 3).

A real site on 127.0.0.1 where some pages fail the ways real ones do (5xx after retries, a dead
link, a body that does not parse, one over ``max_page_bytes``, a connection that drops), loaded
with the real ingest: the good pages are stored, each bad one is a dead letter in
``raw_data.pages__rejected`` (the quarantine's layout), the run summary and the report count
them, and a seed that fails still fails the load naming its URL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flows.main import PipelineSummary
from tasks.errors import SourceError
from tasks.ops.report import report_markdown, stage_payload
from tests.sources.conftest import completed_count, ingest, query, write_sources
from tests.sources.servers import LocalServer, Reply, Request

PAGE = (
    "<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
    "<p>This paragraph about {title} is long enough to be the main content of the page.</p>"
    "{links}</main></body></html>"
)


def html(title: str, *links: str) -> str:
    return PAGE.format(title=title, links="".join(f'<a href="{h}">{h}</a>' for h in links))


class Site:
    """A site whose pages can be switched to failing."""

    def __init__(self) -> None:
        self.server = LocalServer()
        self.pages = {
            # The bad pages are linked first, so the good ones after them prove the crawl went on.
            "/index.html": html(
                "Index",
                "/flaky.html",
                "/missing.html",
                "/empty.html",
                "/huge.html",
                "/truncated.html",
                "/a.html",
                "/b.html",
            ),
            "/a.html": html("A", "/c.html"),
            "/b.html": html("B"),
            "/c.html": html("C"),
            "/empty.html": "",
            "/huge.html": html("Huge") + "<!--" + "x" * 20_000 + "-->",
        }
        #: Paths answering 500 (every attempt).
        self.failing: set[str] = {"/flaky.html"}
        self.server.prefix_routes["/"] = self.route

    def route(self, request: Request) -> Reply:
        if request.path in self.failing:
            return Reply(500, b"oops", content_type="text/plain")
        if request.path == "/truncated.html":  # the connection drops after 20 of 5000 bytes
            headers = {"Content-Length": "5000", "Connection": "close"}
            return Reply(200, html("Cut")[:20], headers=headers, content_type="text/html")
        body = self.pages.get(request.path)
        if body is None:
            return Reply(404, b"missing", content_type="text/plain")
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", headers={"ETag": etag}, content_type="text/html")
        return Reply(200, body, headers={"ETag": etag}, content_type="text/html")


@pytest.fixture
def site() -> Any:
    site = Site()
    site.server.start()
    yield site
    site.server.stop()


def sources_text(server: LocalServer, seed: str = "/index.html") -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{server.url}{seed}"]
    max_page_bytes: 10000
    delay_s: 0
    respect_robots_txt: false
    allow_private_addresses: true
    http: {{backoff_s: 0.01, max_backoff_s: 0.02, max_attempts: 2}}
"""


def dead_letters(database_url: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{path: (reason, raw record)}`` of the completed loads' dead letters."""
    rows = query(
        database_url,
        "select origin, reason, raw_record, rejected_at from raw_data.pages__rejected r "
        "join raw_data._dlt_loads l on l.load_id = r._dlt_load_id and l.status = 0",
    )
    assert all(r[3] is not None for r in rows)
    return {r[0].split(":", 2)[2].split("/", 1)[1]: (r[1], json.loads(r[2])) for r in rows}


def test_bad_pages_are_dead_letters_and_the_crawl_goes_on(
    site: Site, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    url = site.server.url
    sources = write_sources(tmp_path, sources_text(site.server))

    result = ingest(env, sources, "site")

    assert result.rows_by_table == {"pages": 4, "pages__rejected": 5}
    assert result.rejected == 5
    stored = {r[0] for r in query(database_url, "select url from raw_data.pages")}
    assert stored == {f"{url}/{p}.html" for p in ("index", "a", "b", "c")}
    letters = dead_letters(database_url)
    assert set(letters) == {
        "flaky.html",
        "missing.html",
        "empty.html",
        "huge.html",
        "truncated.html",
    }
    for path, (reason, record) in letters.items():
        assert reason.startswith(f"GET {url}/{path}:") or reason.startswith(f"{url}/{path}:")
        assert record["url"] == f"{url}/{path}"
        assert record["referrer"] == f"{url}/index.html" and record["depth"] == 1
    assert re.search(r"HTTP 500 after 2 attempts", letters["flaky.html"][0])
    assert len(site.server.hits("/flaky.html")) == 2  # the session's retries ran first
    assert letters["missing.html"][1]["status"] == 404
    assert "does not parse" in letters["empty.html"][0]
    assert "max_page_bytes" in letters["huge.html"][0]
    assert letters["huge.html"][1]["status"] == 200
    assert "could not be read" in letters["truncated.html"][0]

    # The run summary and the report artifact count them.
    summary = PipelineSummary(ingest=[result], seconds={"ingest": 1.0})
    assert "5 rejected" in summary.to_text()
    assert "9 rows from 1 source(s), 5 rejected" in report_markdown(summary)
    assert stage_payload(summary, "ingest")["rejected"] == 5

    # Next crawl: a page stored earlier now fails. Its row stays, and the pages behind it are
    # still reached through its remembered links (c.html is only linked from a.html).
    site.failing.add("/a.html")
    site.server.clear()
    again = ingest(env, sources, "site")
    assert again.rows_by_table == {"pages__rejected": 6}
    assert len(site.server.hits("/c.html")) == 1
    assert completed_count(database_url, "pages", "url") == (4, 4)
    (count,) = query(database_url, "select count(*) from raw_data.pages__rejected")
    assert count == (11,)  # append-only: one row per failure per crawl


def test_a_seed_that_keeps_failing_fails_the_load_naming_its_url(
    site: Site, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    sources = write_sources(tmp_path, sources_text(site.server, "/flaky.html"))
    with pytest.raises(
        SourceError, match=rf"GET {re.escape(site.server.url)}/flaky\.html: HTTP 500"
    ):
        ingest(env, sources, "site")
    (tables,) = query(
        database_url,
        "select count(*) from information_schema.tables where table_schema = 'raw_data' "
        "and table_name like 'pages%'",
    )
    assert tables == (0,)
