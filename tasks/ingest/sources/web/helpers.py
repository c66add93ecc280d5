"""The web crawler (:class:`Crawler`) and its pure helpers: URL rules, robots.txt, HTML to text.

Bytes become text the way browsers decide (:func:`decode_html`), and the text is parsed by lxml
from UTF-8 bytes with the encoding given explicitly (:func:`parse_page`), so HTML5, HTML4, XHTML
and pages that start with an XML declaration all parse alike. A page that cannot be fetched or
parsed is a dead letter (:class:`PageFailed`): recorded in ``<table>__rejected`` while the crawl
goes on; only a seed that fails fails the load.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import charset_normalizer
import lxml.etree
import lxml.html
import requests
import trafilatura
import urllib3.exceptions
from w3lib.encoding import html_to_unicode

from tasks.errors import SourceError
from tasks.ingest.sources.config import WebSourceConfig
from tasks.ingest.sources.contracts import mark_rejected, rejected_row
from tasks.ingest.sources.http import HttpStatusError, SafeSession
from tasks.ingest.sources.web.settings import (
    GONE_STATUSES,
    HEADING_LINK_MARKS,
    HTML_TYPES,
    MAX_REDIRECTS,
    PROBE_CHARS,
    ROW_LAYOUT,
)

logger = logging.getLogger(__name__)


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without fragment, or ``None`` for mailto:, javascript:, etc."""
    try:
        absolute = urljoin(base, url.strip()) if base else url.strip()
        absolute, _ = urldefrag(absolute)
        parts = urlsplit(absolute)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:  # a malformed link (bad IPv6 literal, port) is not followed
        return None
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


class PageFailed(SourceError):
    """One page could not be fetched (after retries) or parsed; the message names its URL."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.status = status


def detect_encoding(body: bytes) -> str | None:
    """The encoding of a body that declares none: UTF-8 when it decodes as UTF-8, else
    charset-normalizer's best guess (the order trafilatura's own ``detect_encoding`` uses)."""
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # A sample from both ends, as trafilatura does: detection on a whole 5 MB page is slow.
    sample = body if len(body) < 10_000 else body[:5_000] + body[-5_000:]
    best = charset_normalizer.from_bytes(sample).best()
    return best.encoding if best is not None else None


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """``(encoding, text)`` of an HTML body, decided the way browsers do.

    BOM, then the ``charset`` of the ``Content-Type`` header, then ``<meta charset>`` /
    ``<meta http-equiv>`` / the XML declaration, then detection (:func:`detect_encoding`), then
    UTF-8: w3lib's ``html_to_unicode`` (Scrapy's), which also applies the WHATWG label
    overrides (``iso-8859-1`` and ``ascii`` mean windows-1252). Undecodable bytes become U+FFFD.
    requests' own ``response.text`` would take ISO-8859-1 for any ``text/*`` without a charset
    (RFC 2616) over the page's ``<meta charset>``.
    """
    encoding, text = html_to_unicode(content_type, body, auto_detect_fun=detect_encoding)
    return encoding, text


def parse_html(text: str, url: str) -> lxml.html.HtmlElement:
    """The lxml tree of a decoded page.

    lxml refuses a ``str`` that carries an encoding declaration (every DocBook/XHTML page's
    ``<?xml ... encoding="UTF-8"?>``), and a declaration in bytes could disagree with the
    encoding we decided: so the text is parsed as UTF-8 bytes with the encoding given to the
    parser, which then ignores the page's own declarations.

    Raises:
        PageFailed: lxml finds no document in it (empty, or not markup at all).
    """
    parser = lxml.html.HTMLParser(encoding="utf-8")
    try:
        return lxml.html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (lxml.etree.LxmlError, ValueError) as exc:
        raise PageFailed(url, f"the page does not parse as HTML ({exc}).") from None


@dataclass
class Page:
    """What we keep of one HTML page."""

    title: str | None
    canonical_url: str | None
    text: str
    headings: list[dict[str, str]]
    links: list[str]
    language: str | None
    #: Where each heading's section lies in ``text`` (see :func:`page_sections`).
    sections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        """sha256 of the clean text: unchanged text means an unchanged document."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def parse_page(html: str, url: str) -> Page:
    """Clean text (boilerplate removed by trafilatura), title, canonical URL, headings, links.

    Raises:
        PageFailed: the page does not parse (the message names ``url``).
    """
    tree = parse_html(html, url)
    title_element = tree.find(".//title")
    title_text = " ".join(title_element.text_content().split()) if title_element is not None else ""
    title = title_text or None
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
    language = tree.get("lang") or tree.get("xml:lang")  # XHTML pages may carry only xml:lang
    outline = heading_outline(tree)  # before the fallback below prunes the tree
    # trafilatura takes the parsed tree (it would otherwise guess the encoding again, and parse a
    # str with lxml too); it prunes what it is given, hence the copy.
    text = trafilatura.extract(
        copy.deepcopy(tree),
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
    return Page(title, canonical, text, headings, links, language, page_sections(outline, text))


#: Elements whose text is never page text (their tails are).
_NOT_TEXT = frozenset({"script", "style", "noscript", "template", "head", "title"})
_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


@dataclass(frozen=True)
class OutlineHeading:
    """One heading of the HTML tree and the text that follows it, up to the next heading."""

    level: int
    text: str
    following: str


def heading_outline(tree: lxml.html.HtmlElement) -> list[OutlineHeading]:
    """Every non-empty ``h1``-``h6`` in document order, with the page text after it.

    One pass over the tree (``iterwalk``), not an XPath per heading: a long manual has hundreds
    of headings.
    """
    outline: list[OutlineHeading] = []
    current: tuple[int, str] | None = None
    following: list[str] = []
    skipping: Any = None  # the heading or script/style element whose text is being skipped

    def close() -> None:
        if current is not None:
            outline.append(OutlineHeading(current[0], current[1], "".join(following)))

    for event, element in lxml.etree.iterwalk(tree, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""  # comments, PIs: no text
        if event == "start":
            if skipping is not None:
                continue
            if tag in _HEADING_TAGS:
                heading = " ".join(element.text_content().split())
                if heading:
                    close()
                    current, following = (int(tag[1]), heading), []
                skipping = element
            elif tag in _NOT_TEXT or not tag:
                skipping = element
            elif element.text and current is not None:
                following.append(element.text)
            continue
        if skipping is element:
            skipping = None
        if skipping is None and element.tail and current is not None:
            following.append(element.tail)
    close()
    return outline


_NON_SPACE = re.compile(r"\S+")


def _squeeze(text: str) -> tuple[str, list[int]]:
    """``text`` without whitespace, and the index in ``text`` of each character kept.

    trafilatura re-flows whitespace (a block boundary becomes a newline, runs collapse), so the
    tree's text and the stored text are compared with all whitespace taken out. (``re``'s
    ``\\s`` and ``str.split`` agree on what whitespace is.)
    """
    where: list[int] = []
    for run in _NON_SPACE.finditer(text):
        where.extend(range(run.start(), run.end()))
    return "".join(text.split()), where


def _probe(text: str) -> str:
    """The first :data:`PROBE_CHARS` non-space characters of ``text``."""
    head = "".join(text[: PROBE_CHARS * 8].split())
    if len(head) < PROBE_CHARS and len(text) > PROBE_CHARS * 8:
        head = "".join(text.split())
    return head[:PROBE_CHARS]


def heading_label(text: str) -> str:
    """A heading as shown in a heading path: without the permalink mark Sphinx appends."""
    return text.rstrip(HEADING_LINK_MARKS + " ").strip() or text


def page_sections(outline: list[OutlineHeading], text: str) -> list[dict[str, Any]]:
    """Where each heading's section lies in the stored ``text``, as JSON-ready dicts.

    ``{"level": 2, "heading": "Creating a branch", "path": ["Branching", "Creating a branch"],
    "start": 120, "text_start": 138, "end": 480}``: character offsets into ``text`` (a section
    ends where the next one starts, the last at the end of the text; ``text_start`` is past the
    heading's own line when the text has it), ``path`` the headings above it and itself.

    The stored text is trafilatura's, which keeps some headings as lines and drops others
    (DocBook's), so each heading is located by the heading followed by
    the start of its text, else by the start of its text alone, else by the heading alone,
    searching forward from the previous one. A heading found nowhere is not a section: before
    the first section it is dropped (navigation, a site header that trafilatura removed), after
    it, it stays in the paths of the headings under it (a chapter title over its table of
    contents).
    """
    squeezed, where = _squeeze(text)

    def own_line(at: int, length: int) -> bool:
        """Whether the ``length`` squeezed characters at ``at`` are a whole line of ``text``."""
        begin, end = where[at], where[at + length - 1] + 1
        before = text[text.rfind("\n", 0, begin) + 1 : begin]
        after = text[end : (text.find("\n", end) + 1 or len(text) + 1) - 1]
        return not before.strip() and not after.strip()

    def find(needle: str, start: int, whole_line: bool) -> int:
        found = squeezed.find(needle, start)
        while whole_line and found >= 0 and not own_line(found, len(needle)):
            found = squeezed.find(needle, found + 1)
        return found

    # Per heading: (start, start of its text after the heading line) or None (not found).
    spots: list[tuple[int, int] | None] = []
    cursor = 0
    for heading in outline:
        head = "".join(heading.text.split())
        probe = _probe(heading.following)
        # (needle, characters of it that are the heading, must be a whole line): a heading
        # alone is a short string that could occur anywhere, so it counts only as a line.
        tries = [(head + probe, len(head), False), (probe, 0, False)] if probe else []
        tries.append((head, len(head), True))
        found, skip = -1, 0
        for needle, heading_chars, whole_line in tries:
            found, skip = find(needle, cursor, whole_line), heading_chars
            if found >= 0:
                break
        if found < 0:
            spots.append(None)
            continue
        body = where[found + skip - 1] + 1 if skip else where[found]
        spots.append((where[found], body))
        cursor = found + max(skip, 1)
    starts = [spot[0] for spot in spots if spot is not None]
    sections: list[dict[str, Any]] = []
    stack: list[tuple[int, str]] = []
    for heading, spot in zip(outline, spots, strict=True):
        if spot is None and not sections:
            continue  # before the main text: a site header, a sidebar
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        label = heading_label(heading.text)
        stack.append((heading.level, label))
        if spot is None:
            # Dropped from the text with the lines under it (a DocBook chapter title over its
            # table of contents): still the parent of the sections that follow.
            continue
        start, body = spot
        later = starts[bisect.bisect_right(starts, start) :]
        sections.append(
            {
                "level": heading.level,
                "heading": label,
                "path": [name for _, name in stack],
                "start": start,
                "text_start": body,
                "end": later[0] if later else len(text),
            }
        )
    return sections


class Crawler:
    """One crawl of one web source (state: the resource's dlt state dict)."""

    def __init__(
        self,
        config: WebSourceConfig,
        state: dict[str, Any],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep
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
        #: Dead letters yielded by this crawl.
        self.rejected = 0

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
                self._sleep(pause)
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

    def crawl(self) -> Iterator[Any]:
        """Yield a row per new or changed page, and a dead letter per page that failed.

        Raises:
            SourceError: a seed could not be fetched or parsed (the message names its URL).
        """
        queue: deque[tuple[str, int, str | None]] = deque()
        queued: set[str] = set()
        for seed in self.config.seeds:
            url = normalize_url(seed)
            if url and url not in queued:
                queue.append((url, 0, None))
                queued.add(url)
        while queue and self.fetched < self.config.max_pages:
            url, depth, referrer = queue.popleft()
            if not self.allowed(url):
                logger.info("Skipping %s (domain, pattern or robots.txt)", url)
                continue
            try:
                row, links = self.fetch(url, depth)
            except SourceError as exc:
                if depth == 0:
                    # A seed that fails is a configuration problem, or the whole site is down
                    # (then nothing must be deleted): the load fails and changes nothing.
                    raise
                status = getattr(exc, "status", None)
                if status in GONE_STATUSES and url in self.pages:
                    # A page stored by an earlier crawl is gone: delete its row (dlt's hard
                    # delete), and forget it, so it is fetched afresh if it comes back.
                    logger.warning("%s is gone (HTTP %s): deleting its row", url, status)
                    del self.pages[url]
                    yield deleted_row(url)
                    continue
                # A dead link, a page still failing after the session's retries, a page that
                # does not parse, a link into a private network: recorded, and the crawl goes
                # on. A page stored earlier keeps its row, and its remembered links are
                # followed, so one bad page does not hide the pages behind it.
                logger.warning("Dead letter (%s): %s", self.config.table, exc)
                self.rejected += 1
                yield dead_letter(self.config.table, url, exc, depth, referrer)
                row, links = None, list((self.pages.get(url) or {}).get("links", []))
            if row is not None:
                yield row
            if depth < self.config.max_depth:
                for link in links:
                    if link not in queued:
                        queued.add(link)
                        queue.append((link, depth + 1, url))

    def fetch(self, url: str, depth: int) -> tuple[dict[str, Any] | None, list[str]]:
        """Fetch one page: its row when new or changed (else ``None``) and its links.

        Raises:
            SourceError: the page could not be fetched (:class:`HttpStatusError`,
                ``HttpRetriesExhausted``, ``BlockedAddressError`` from the session, or
                :class:`PageFailed`) or parsed (:class:`PageFailed`); each names the URL.
        """
        known = self.pages.get(url) or {}
        headers = {}
        # A page stored under an older row layout is fetched in full once, to store it anew.
        current = known.get("layout", 1) == ROW_LAYOUT
        if current and known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if current and known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        self._wait(url)
        self.fetched += 1
        final_url = url
        # Redirects are followed here, hop by hop, so that each hop is held to the allowed
        # domains (the session's SSRF guard checks every request too).
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.get(
                    final_url, headers=headers, stream=True, allow_redirects=False
                )
            except requests.RequestException as exc:  # the session wraps transient ones
                raise PageFailed(final_url, f"the request failed ({exc}).") from None
            if not response.is_redirect:
                break
            target = normalize_url(response.headers.get("Location", ""), final_url)
            response.close()
            if target is None or not self.rules.allows(target):
                logger.info("%s redirects out of the allowed domains to %s", url, target)
                return None, []
            final_url = target
        else:
            raise PageFailed(url, f"more than {MAX_REDIRECTS} redirects.", response.status_code)
        with response:
            if response.status_code == 304:
                return None, list(known.get("links", []))
            content_type = response.headers.get("Content-Type", "")
            if content_type and content_type.split(";")[0].strip() not in HTML_TYPES:
                return None, []
            try:
                body = response.raw.read(self.config.max_page_bytes + 1, decode_content=True)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise PageFailed(
                    url, f"the body could not be read ({exc}).", response.status_code
                ) from None
            if len(body) > self.config.max_page_bytes:
                raise PageFailed(
                    url,
                    f"over max_page_bytes ({self.config.max_page_bytes} bytes); raise "
                    "`max_page_bytes` to store it.",
                    response.status_code,
                )
            # From the bytes, not requests' response.text: see decode_html.
            _, html = decode_html(body, content_type or None)
            etag = response.headers.get("ETag")
            last_modified = response.headers.get("Last-Modified")
        page = parse_page(html, final_url)
        links = [link for link in page.links if self.rules.allows(link)]
        # A row stored under an older layout (before ``sections``) is stored once again.
        unchanged = (
            known.get("content_hash") == page.content_hash and known.get("layout", 1) == ROW_LAYOUT
        )
        self.pages[url] = {
            "etag": etag,
            "last_modified": last_modified,
            "content_hash": page.content_hash,
            "links": links,
            "layout": ROW_LAYOUT,
        }
        if unchanged:
            return None, links
        row = {
            "url": url,
            "canonical_url": page.canonical_url or final_url,
            "title": page.title,
            "text": page.text,
            "headings": page.headings,
            "sections": page.sections,
            "language": page.language,
            "last_modified": http_date(last_modified),
            "etag": etag,
            "content_hash": page.content_hash,
            "depth": depth,
            "fetched_at": datetime.now(UTC),
        }
        return row, links


def dead_letter(table: str, url: str, error: SourceError, depth: int, referrer: str | None) -> Any:
    """The ``<table>__rejected`` row of a page that failed, in the quarantine's layout
    (:mod:`tasks.ingest.sources.contracts`): ``origin`` is the URL, ``raw_record`` a JSON object
    with ``url``, ``status`` (null when no HTTP status applies), ``depth`` and ``referrer`` (the
    page that linked it)."""
    status = getattr(error, "status", None)
    record = {"url": url, "status": status, "depth": depth, "referrer": referrer}
    return mark_rejected([rejected_row(record, str(error), origin=url)], table)


def deleted_row(url: str) -> dict[str, Any]:
    """The row that deletes page ``url`` from the pages table (``deleted`` is dlt's hard-delete
    column: the merge removes the stored row by its key and inserts nothing)."""
    return {"url": url, "content_hash": "", "fetched_at": datetime.now(UTC), "deleted": True}
