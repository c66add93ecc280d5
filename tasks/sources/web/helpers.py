"""Pure helpers of the web crawler: URL rules, robots.txt, and HTML to clean text."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import lxml.html
import trafilatura

HTML_TYPES = ("text/html", "application/xhtml+xml")


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without fragment, or ``None`` for mailto:, javascript:, etc."""
    absolute = urljoin(base, url.strip()) if base else url.strip()
    absolute, _ = urldefrag(absolute)
    parts = urlsplit(absolute)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path or "/"
    netloc = parts.netloc.lower()
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def in_domains(url: str, domains: list[str]) -> bool:
    """Whether ``url``'s host is one of ``domains`` or a subdomain of one."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)


@dataclass(frozen=True)
class UrlRules:
    """Which URLs the crawl may visit."""

    domains: list[str]
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        """In the allowed domains, matching an include pattern (if any) and no exclude one."""
        if not in_domains(url, self.domains):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


def parse_robots(text: str | None) -> RobotFileParser:
    """A robots.txt parser; ``None`` (no robots.txt) allows everything."""
    parser = RobotFileParser()
    parser.parse((text or "").splitlines())
    return parser


def http_date(value: str | None) -> datetime | None:
    """An HTTP date header as an aware datetime, or ``None``."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Page:
    """What we keep of one HTML page."""

    title: str | None
    canonical_url: str | None
    text: str
    headings: list[dict[str, str]]
    links: list[str]
    language: str | None

    @property
    def content_hash(self) -> str:
        """sha256 of the clean text: unchanged text means an unchanged document."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def parse_page(html: str, url: str) -> Page:
    """Clean text (boilerplate removed by trafilatura), title, canonical URL, headings, links."""
    tree = lxml.html.fromstring(html)
    title = (tree.findtext(".//title") or "").strip() or None
    canonical = None
    for link in tree.xpath("//link[@rel='canonical'][@href]"):
        canonical = normalize_url(link.get("href"), url)
        break
    headings = [
        {"level": el.tag, "text": " ".join(el.text_content().split())}
        for el in tree.xpath("//h1|//h2|//h3|//h4|//h5|//h6")
        if el.text_content().strip()
    ]
    links: list[str] = []
    seen: set[str] = set()
    for anchor in tree.xpath("//a[@href]"):
        if "nofollow" in (anchor.get("rel") or ""):
            continue
        target = normalize_url(anchor.get("href"), url)
        if target and target not in seen:
            seen.add(target)
            links.append(target)
    language = tree.get("lang")
    text = trafilatura.extract(
        html,
        url=url,
        output_format="txt",
        include_comments=False,
        include_tables=True,
        favor_recall=True,
    )
    if not text:  # trafilatura gives up on very short pages: keep their visible text
        for element in tree.xpath("//script|//style|//noscript|//nav|//footer|//header"):
            element.drop_tree()
        text = " ".join(tree.text_content().split())
    return Page(title, canonical, text, headings, links, language)
