"""Real HTML documentation trees from Debian packages, a static server for them, and an
independent reading of the files on disk (reachable pages, titles) to check a crawl against.

The packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (nothing is
installed into the system, no root needed once the package lists exist) into
``<repo>/.data/test-cache/debian-docs/<package>``, so later runs reuse them.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import lxml.html

from tests.sources.servers import QuietHTTPServer

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".data" / "test-cache" / "debian-docs"

#: Suffixes Python's static server sends as text/html or application/xhtml+xml.
HTML_SUFFIXES = (".html", ".htm", ".xhtml")


@dataclass(frozen=True)
class DocTree:
    """One package's documentation: the folder to serve and the seed page inside it."""

    package: str
    #: Folder inside the unpacked package that the server serves as ``/``.
    root: str
    seed: str


#: DocBook XSL output (XHTML 1.0, every page starting with an XML declaration), Sphinx (HTML5
#: with ``<meta charset="utf-8">``, en dashes, curly quotes and pilcrows on most pages) and
#: git's manual (AsciiDoc XHTML 1.1 with an XML declaration, ~220 pages reachable from git.html,
#: the DocBook user manual among them, and one real dead link: git-p4.html is not shipped).
TREES = {
    "debian-faq": DocTree("debian-faq", "usr/share/doc/debian/FAQ", "index.html"),
    "python-jinja2-doc": DocTree(
        "python-jinja2-doc", "usr/share/doc/python-jinja2-doc/html", "index.html"
    ),
    "git-doc": DocTree("git-doc", "usr/share/doc/git-doc", "git.html"),
}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def fetch_tree(tree: DocTree, cache: Path = CACHE) -> Path:
    """The served folder of ``tree``, downloading and unpacking the package on first use.

    Raises:
        RuntimeError: apt-get or dpkg is missing or fails (the message says what to do).
    """
    target = cache / tree.package
    served = target / tree.root
    if (served / tree.seed).is_file():
        return served
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool} is not on PATH: the real-docs crawl test needs a Debian-based machine "
                f"to fetch {tree.package} (or a cache at {target})."
            )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{tree.package}-") as scratch:
        work = Path(scratch)
        done = _run(["apt-get", "download", tree.package], work)
        if done.returncode != 0:  # stale or missing package lists: refresh them once
            update = _run(["apt-get", "update"], work)
            done = _run(["apt-get", "download", tree.package], work)
            if done.returncode != 0:
                raise RuntimeError(
                    f"apt-get download {tree.package} failed: {done.stderr.strip()} "
                    f"(apt-get update: {update.stderr.strip()[-300:]})"
                )
        (deb,) = work.glob(f"{tree.package}_*.deb")
        unpacked = work / "tree"
        done = _run(["dpkg", "-x", deb.name, str(unpacked)], work)
        if done.returncode != 0:
            raise RuntimeError(f"dpkg -x {deb.name} failed: {done.stderr.strip()}")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)  # atomic: a half-unpacked tree is never taken for a cache
    if not (served / tree.seed).is_file():
        raise RuntimeError(f"{tree.package} has no {tree.root}/{tree.seed}: pick another seed.")
    return served


class StaticServer:
    """Python's static file server on 127.0.0.1: ``Content-Type: text/html`` with no charset,
    ``Last-Modified`` and 304s for ``If-Modified-Since``; logs ``(path, status)``."""

    def __init__(self, root: Path) -> None:
        self.log: list[tuple[str, int]] = []
        lock = threading.Lock()
        log = self.log

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                with lock:
                    log.append((urlsplit(self.path).path, int(code)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def characters_of(path: Path) -> set[str]:
    """Every character of the file's text as lxml reads it from the bytes, plus those of the
    same text with entities unescaped once more (trafilatura unescapes text that shows an
    entity literally: a code sample's ``&nbsp;``, git's ``&timestamp`` read as ``&times``)."""
    text = lxml.html.fromstring(path.read_bytes()).text_content()
    return set(text) | set(html.unescape(text))


def title_of(path: Path) -> str:
    """The file's ``<title>``, whitespace collapsed, read by lxml from the bytes (libxml2 finds
    the encoding itself: its own reading, not the product's)."""
    tree = lxml.html.fromstring(path.read_bytes())
    element = tree.find(".//title")
    return " ".join(element.text_content().split()) if element is not None else ""


@dataclass
class Reachable:
    """What a crawl from the seed must find: stored pages, and links that lead nowhere."""

    #: URL -> the HTML file it serves.
    pages: dict[str, Path] = field(default_factory=dict)
    #: URLs linked from reachable pages that the server answers with 404.
    missing: set[str] = field(default_factory=set)


def _served_file(root: Path, url: str) -> Path | None:
    """The file Python's static server sends for ``url`` (a folder: its index.html)."""
    path = root / unquote(urlsplit(url).path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path if path.is_file() else None


def reachable(root: Path, base_url: str, seed: str) -> Reachable:
    """Pages reachable from ``seed`` by following ``<a href>`` (not ``rel=nofollow``) on the
    same host, fragments dropped: the crawl's URL rules, read from the files on disk."""
    host = urlsplit(base_url).hostname
    found = Reachable()
    start = f"{base_url}/{seed}"
    queue, seen = deque([start]), {start}
    while queue:
        url = queue.popleft()
        path = _served_file(root, url)
        if path is None:
            found.missing.add(url)
            continue
        if path.suffix not in HTML_SUFFIXES:
            continue  # served, but not as HTML: not stored, its links not followed
        found.pages[url] = path
        tree = lxml.html.fromstring(path.read_bytes())
        for anchor in tree.xpath("//a[@href]"):
            if "nofollow" in (anchor.get("rel") or ""):
                continue
            target, _ = urldefrag(urljoin(url, anchor.get("href").strip()))
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or parts.hostname != host:
                continue
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return found
