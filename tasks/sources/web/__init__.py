"""dlt source that crawls web pages from seed URLs and stores their clean text, one row per page.

Breadth-first from the seeds, within the allowed domains, up to ``max_pages`` fetched pages and
``max_depth`` links from a seed; robots.txt is obeyed (its Crawl-delay too, when longer than
``delay_s``). Each page's validators (ETag, Last-Modified), text hash and links live in the
resource's dlt state: the next crawl sends conditional requests, a 304 or an unchanged text hash
is not stored again, and the remembered links keep the crawl going past unchanged pages.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dlt
from dlt.sources import DltResource

from tasks.sources.config import WebSourceConfig
from tasks.sources.contracts import dlt_contract
from tasks.sources.http import HttpStatusError, SafeSession
from tasks.sources.web.helpers import (
    HTML_TYPES,
    UrlRules,
    http_date,
    normalize_url,
    parse_page,
    parse_robots,
)

logger = logging.getLogger(__name__)

#: Columns of the pages table (documents models read these).
PAGE_COLUMNS: dict[str, dict[str, Any]] = {
    "url": {"data_type": "text", "nullable": False},
    "canonical_url": {"data_type": "text"},
    "title": {"data_type": "text"},
    "text": {"data_type": "text"},
    "headings": {"data_type": "json"},
    "language": {"data_type": "text"},
    "last_modified": {"data_type": "timestamp"},
    "etag": {"data_type": "text"},
    "content_hash": {"data_type": "text", "nullable": False},
    "depth": {"data_type": "bigint"},
    "fetched_at": {"data_type": "timestamp", "nullable": False},
}


class Crawler:
    """One crawl of one web source (state: the resource's dlt state dict)."""

    def __init__(self, config: WebSourceConfig, state: dict[str, Any]) -> None:
        self.config = config
        self.pages: dict[str, Any] = state.setdefault("pages", {})
        self.session = SafeSession(config.http, allow_private=config.allow_private_addresses)
        self.rules = UrlRules(
            config.domains,
            [re.compile(p) for p in config.include_patterns],
            [re.compile(p) for p in config.exclude_patterns],
        )
        self._robots: dict[str, Any] = {}
        self._last_request: dict[str, float] = {}
        self.fetched = 0

    def _wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        robots = self._robots.get(host)
        delay = self.config.delay_s
        crawl_delay = robots.crawl_delay(self.config.http.user_agent) if robots else None
        if crawl_delay:
            delay = max(delay, float(crawl_delay))
        last = self._last_request.get(host)
        if last is not None and delay > 0:
            pause = last + delay - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        self._last_request[host] = time.monotonic()

    def _robots_for(self, url: str) -> Any:
        parts = urlsplit(url)
        host = parts.netloc
        if host not in self._robots:
            robots_url = f"{parts.scheme}://{host}/robots.txt"
            text: str | None = None
            self._wait(robots_url)
            try:
                with self.session.get(robots_url) as response:
                    text = response.text
            except HttpStatusError:
                text = None  # 4xx: no robots.txt, everything is allowed (RFC 9309)
            self._robots[host] = parse_robots(text)
        return self._robots[host]

    def allowed(self, url: str) -> bool:
        """URL rules, then robots.txt (when respected)."""
        if not self.rules.allows(url):
            return False
        if not self.config.respect_robots_txt:
            return True
        return bool(self._robots_for(url).can_fetch(self.config.http.user_agent, url))

    def crawl(self) -> Iterator[dict[str, Any]]:
        """Yield a row per new or changed page."""
        queue: deque[tuple[str, int]] = deque()
        queued: set[str] = set()
        for seed in self.config.seeds:
            url = normalize_url(seed)
            if url and url not in queued:
                queue.append((url, 0))
                queued.add(url)
        while queue and self.fetched < self.config.max_pages:
            url, depth = queue.popleft()
            if not self.allowed(url):
                logger.info("Skipping %s (domain, pattern or robots.txt)", url)
                continue
            try:
                row, links = self.fetch(url, depth)
            except HttpStatusError as exc:
                if depth == 0:
                    raise  # a seed that fails is a configuration problem
                logger.warning("Skipping broken link: %s", exc)  # dead links are normal
                continue
            if row is not None:
                yield row
            if depth < self.config.max_depth:
                for link in links:
                    if link not in queued:
                        queued.add(link)
                        queue.append((link, depth + 1))

    def fetch(self, url: str, depth: int) -> tuple[dict[str, Any] | None, list[str]]:
        """Fetch one page: its row when new or changed (else ``None``) and its links."""
        known = self.pages.get(url) or {}
        headers = {}
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        self._wait(url)
        self.fetched += 1
        with self.session.get(url, headers=headers, stream=True) as response:
            if response.status_code == 304:
                return None, list(known.get("links", []))
            final_url = normalize_url(response.url) or url
            if final_url != url and not self.rules.allows(final_url):
                logger.info("%s redirects out of the allowed domains to %s", url, final_url)
                return None, []
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type and content_type not in HTML_TYPES:
                return None, []
            body = response.raw.read(self.config.max_page_bytes + 1, decode_content=True)
            if len(body) > self.config.max_page_bytes:
                logger.warning("%s is over max_page_bytes; skipped", url)
                return None, []
            encoding = response.encoding or response.apparent_encoding or "utf-8"
            html = body.decode(encoding, errors="replace")
            etag = response.headers.get("ETag")
            last_modified = response.headers.get("Last-Modified")
        page = parse_page(html, final_url)
        links = [link for link in page.links if self.rules.allows(link)]
        unchanged = known.get("content_hash") == page.content_hash
        self.pages[url] = {
            "etag": etag,
            "last_modified": last_modified,
            "content_hash": page.content_hash,
            "links": links,
        }
        if unchanged:
            return None, links
        row = {
            "url": url,
            "canonical_url": page.canonical_url or final_url,
            "title": page.title,
            "text": page.text,
            "headings": page.headings,
            "language": page.language,
            "last_modified": http_date(last_modified),
            "etag": etag,
            "content_hash": page.content_hash,
            "depth": depth,
            "fetched_at": datetime.now(UTC),
        }
        return row, links


def pages_resource(config: WebSourceConfig) -> DltResource:
    """The pages table: one row per crawled page (merge on ``url``)."""

    def pages() -> Iterator[dict[str, Any]]:
        crawler = Crawler(config, dlt.current.resource_state())
        with crawler.session:
            yield from crawler.crawl()

    return dlt.resource(
        pages,
        name=config.table,
        primary_key="url",
        write_disposition="merge",
        columns=PAGE_COLUMNS,
        schema_contract=dlt_contract(config.contract),
    )


@dlt.source(max_table_nesting=0)
def web_pages(config: WebSourceConfig) -> DltResource:
    """Crawled pages of one ``web`` source declared in the sources file."""
    return pages_resource(config)
