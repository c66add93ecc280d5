"""Web kind on pages as real servers send them: XHTML with an XML declaration, HTML5/HTML4 in
various encodings, declared in the header, in ``<meta>``, in the XML declaration, by a BOM, or
not at all (issue 12, items 1 and 2).

The crawl tests serve the bytes from a real HTTP server and load them with the real ingest into
the embedded Postgres; the table tests pin the decoding rule itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.errors import SourceError
from tasks.ingest.sources.web.helpers import PageFailed, decode_html, parse_page
from tests.sources.conftest import ingest, query, write_sources
from tests.sources.servers import LocalServer, Reply, Route

#: Text with an em dash, an en dash, accents, a curly quote and CJK: what mojibake breaks.
SAMPLE = "Café naïve résumé — “quoted” – Tōkyō 東京タワー"
TITLE = "Überblick — 概要"

XHTML = (
    '<?xml version="1.0" encoding="{enc}" standalone="no"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
    '<html xmlns="http://www.w3.org/1999/xhtml"><head>'
    '<title>{title}</title></head><body><div class="chapter"><h1>{title}</h1>'
    "<p>{text} This paragraph is long enough to be the main content of the page for the "
    "extractor.</p></div></body></html>"
)
HTML5 = (
    '<!doctype html><html lang="en"><head>{meta}<title>{title}</title></head><body><main>'
    "<h1>{title}</h1><p>{text} This paragraph is long enough to be the main content of the "
    "page for the extractor.</p></main></body></html>"
)
HTML4 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">'
    "<HTML><HEAD>{meta}<TITLE>{title}</TITLE></HEAD><BODY><H1>{title}</H1><P>{text} This "
    "paragraph is long enough to be the main content of the page for the extractor.</P>"
    "</BODY></HTML>"
)
CYRILLIC = (
    "Привет! Это страница на русском языке, записанная в кодировке Windows-1251 без всякого "
    "объявления: ни в заголовке, ни в самой странице. Браузер угадывает кодировку по тексту."
)


def _meta(charset: str) -> str:
    return f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'


#: name -> (Content-Type header, body bytes, expected title, expected text fragment)
PAGES: dict[str, tuple[str, bytes, str, str]] = {
    # DocBook's output: the XML declaration lxml refuses in a str (item 1).
    "xhtml-utf8": (
        "text/html",
        XHTML.format(enc="UTF-8", title=TITLE, text=SAMPLE).encode("utf-8"),
        TITLE,
        SAMPLE,
    ),
    "xhtml-as-xhtml-type": (
        "application/xhtml+xml",
        XHTML.format(enc="UTF-8", title=TITLE, text=SAMPLE).encode("utf-8"),
        TITLE,
        SAMPLE,
    ),
    # The XML declaration is the only declaration; the page is Shift_JIS.
    "xhtml-shift-jis": (
        "application/xhtml+xml",
        XHTML.format(enc="Shift_JIS", title="概要", text="東京タワー と 富士山").encode(
            "shift_jis"
        ),
        "概要",
        "東京タワー と 富士山",
    ),
    # HTML5 <meta charset>, no charset in the header (the 707-of-1,169 mojibake, item 2).
    "html5-meta-utf8": (
        "text/html",
        HTML5.format(meta='<meta charset="utf-8">', title=TITLE, text=SAMPLE).encode("utf-8"),
        TITLE,
        SAMPLE,
    ),
    # HTML4 http-equiv windows-1252: its en dash is 0x96, a C1 control in ISO-8859-1.
    "html4-windows-1252": (
        "text/html",
        HTML4.format(
            meta=_meta("windows-1252"), title="Café – menu", text="naïve – “déjà vu”"
        ).encode("cp1252"),
        "Café – menu",
        "naïve – “déjà vu”",
    ),
    # The header's charset wins over a <meta> that lies.
    "header-beats-meta": (
        "text/html; charset=windows-1252",
        HTML5.format(
            meta='<meta charset="utf-8">', title="Crème brûlée", text="À la carte – oui"
        ).encode("cp1252"),
        "Crème brûlée",
        "À la carte – oui",
    ),
    # A BOM wins over everything, the header included.
    "bom-utf16": (
        "text/html; charset=iso-8859-1",
        "\ufeff".encode("utf-16-le")
        + HTML5.format(meta="", title=TITLE, text=SAMPLE).encode("utf-16-le"),
        TITLE,
        SAMPLE,
    ),
    # No declaration anywhere: detection finds UTF-8 ...
    "undeclared-utf8": (
        "text/html",
        HTML5.format(meta="", title=TITLE, text=SAMPLE).encode("utf-8"),
        TITLE,
        SAMPLE,
    ),
    # ... and windows-1251.
    "undeclared-windows-1251": (
        "text/html",
        HTML5.format(meta="", title="Привет", text=CYRILLIC).encode("cp1251"),
        "Привет",
        CYRILLIC,
    ),
}

MOJIBAKE = re.compile("[\u0080-\u009f\ufffd]|Ã|Â|â€")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_decode_and_parse_like_a_browser(name: str) -> None:
    """The pure rule: bytes + header -> text -> title and main text, for every page kind."""
    content_type, body, title, text = PAGES[name]
    _, html = decode_html(body, content_type)
    page = parse_page(html, f"http://example.test/{name}.html")
    assert page.title == title
    assert text in page.text
    assert not MOJIBAKE.search(page.text + (page.title or ""))


def test_a_page_that_does_not_parse_names_its_url() -> None:
    with pytest.raises(PageFailed, match=r"^http://example\.test/empty\.html: .*does not parse"):
        parse_page("", "http://example.test/empty.html")


@pytest.fixture
def encoded_site() -> Iterator[LocalServer]:
    """Every page of :data:`PAGES` served with its own Content-Type, linked from an index."""
    server = LocalServer()
    links = "".join(f'<li><a href="/{name}.html">{name}</a></li>' for name in sorted(PAGES))
    index = HTML5.format(meta="", title="Index", text=f"<ul>{links}</ul>")
    server.routes["/index.html"] = lambda request: Reply(200, index, content_type="text/html")

    def page(body: bytes, content_type: str) -> Route:
        return lambda request: Reply(200, body, content_type=content_type)

    for name, (content_type, body, _, _) in PAGES.items():
        server.routes[f"/{name}.html"] = page(body, content_type)
    server.start()
    yield server
    server.stop()


def _sources(server: LocalServer, seed: str = "/index.html") -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{server.url}{seed}"]
    delay_s: 0
    respect_robots_txt: false
    allow_private_addresses: true
    http: {{backoff_s: 0.01, max_attempts: 2}}
"""


def test_crawl_stores_every_encoding_without_mojibake(
    encoded_site: LocalServer, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """Through the real crawl and load: titles and text round-trip into raw_data unchanged."""
    sources = write_sources(tmp_path, _sources(encoded_site))

    result = ingest(env, sources, "site")

    assert result.rows_by_table == {"pages": len(PAGES) + 1}
    stored = {
        url.rsplit("/", 1)[1].removesuffix(".html"): (title, text)
        for url, title, text in query(database_url, "select url, title, text from raw_data.pages")
    }
    for name, (_, _, title, text) in PAGES.items():
        assert stored[name][0] == title, name
        assert text in stored[name][1], name
    (bad,) = query(
        database_url,
        "select count(*) from raw_data.pages where title ~ '[\\u0080-\\u009f]' "
        "or text ~ '[\\u0080-\\u009f\\ufffd]' or text like '%â€%' or text like '%Ã%'",
    )
    assert bad == (0,)


def test_an_xhtml_seed_with_an_xml_declaration_is_crawled(
    encoded_site: LocalServer, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """The DocBook seed that failed with 'Unicode strings with encoding declaration...'."""
    sources = write_sources(tmp_path, _sources(encoded_site, "/xhtml-utf8.html"))
    assert ingest(env, sources, "site").rows_by_table == {"pages": 1}
    assert query(database_url, "select title from raw_data.pages") == [(TITLE,)]


def test_a_seed_that_does_not_parse_fails_the_load_naming_its_url(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = LocalServer()
    server.routes["/empty.html"] = lambda request: Reply(200, b"", content_type="text/html")
    server.start()
    try:
        sources = write_sources(tmp_path, _sources(server, "/empty.html"))
        with pytest.raises(SourceError, match=rf"{re.escape(server.url)}/empty\.html: .*parse"):
            ingest(env, sources, "site")
    finally:
        server.stop()
