"""Fixtures for the source tests: a paginated JSON API with auth, a CSV file server and a small
web site, all real HTTP servers on 127.0.0.1; plus helpers to declare and load sources."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.sources.servers import LocalServer, Reply, Request

PAGE_SIZE = 3
TOKEN = "secret-token"
OAUTH_TOKEN = "oauth-issued-token"
API_KEY = "key-123"
BASIC = ("alice", "pw-456")


@dataclass
class Api:
    """The fake API's data and server."""

    server: LocalServer
    items: list[dict[str, Any]] = field(default_factory=list)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: Block requests for this page number until the event is set (kill tests).
    block_page: int | None = None
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.server.url

    def add_items(self, start: int, count: int, updated_at: str) -> None:
        for i in range(start, start + count):
            self.items.append(
                {"id": i, "name": f"item {i}", "price": i * 1.5, "updated_at": updated_at}
            )
            self.reviews[i] = [{"review_id": i * 10, "rating": 1 + i % 5}]


def _authorized(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    if auth in (f"Bearer {TOKEN}", f"Bearer {OAUTH_TOKEN}"):
        return True
    if auth == "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode():
        return True
    return request.headers.get("x-api-key") == API_KEY or request.query.get("api_key") == API_KEY


def make_api() -> Api:
    server = LocalServer()
    api = Api(server)
    api.add_items(1, 7, "2024-01-01T00:00:00Z")

    def selected(request: Request) -> list[dict[str, Any]]:
        since = request.query.get("updated_since")
        rows = sorted(api.items, key=lambda r: r["id"])
        return [r for r in rows if since is None or r["updated_at"] >= since]

    def guard(handler: Any) -> Any:
        def route(request: Request) -> Reply:
            if not _authorized(request):
                return Reply(401, {"error": "unauthorized"})
            page = int(request.query.get("page", "1"))
            if api.block_page is not None and page >= api.block_page:
                api.release.wait(120)
            return handler(request)  # type: ignore[no-any-return]

        return route

    def page_number(request: Request) -> Reply:
        page = int(request.query.get("page", "1"))
        rows = selected(request)[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return Reply(body={"data": rows})

    def offset(request: Request) -> Reply:
        start, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 3))
        rows = selected(request)
        return Reply(body={"data": rows[start : start + limit], "total": len(rows)})

    def cursor(request: Request) -> Reply:
        start = int(request.query.get("cursor") or 0)
        rows = selected(request)
        nxt = start + PAGE_SIZE
        return Reply(
            body={
                "data": rows[start:nxt],
                "next_cursor": str(nxt) if nxt < len(rows) else None,
            }
        )

    def header_link(request: Request) -> Reply:
        page = int(request.query.get("page", "1"))
        rows = selected(request)
        headers = {}
        if page * PAGE_SIZE < len(rows):
            since = request.query.get("updated_since")
            extra = f"&updated_since={since}" if since else ""
            headers["Link"] = f'<{api.url}/header_link?page={page + 1}{extra}>; rel="next"'
        return Reply(body=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], headers=headers)

    def json_link(request: Request) -> Reply:
        page = int(request.query.get("page", "1"))
        rows = selected(request)
        nxt = f"{api.url}/json_link?page={page + 1}" if page * PAGE_SIZE < len(rows) else None
        return Reply(body={"results": rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], "next": nxt})

    def reviews(request: Request) -> Reply:
        item_id = int(request.path.split("/")[2])
        return Reply(body=api.reviews.get(item_id, []))

    def token(request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(b"cid:csecret").decode()
        if auth != expected and b"client_secret=csecret" not in request.body:
            return Reply(401, {"error": "invalid_client"})
        return Reply(body={"access_token": OAUTH_TOKEN, "expires_in": 3600})

    server.routes.update(
        {
            "/page_number": guard(page_number),
            "/offset": guard(offset),
            "/cursor": guard(cursor),
            "/header_link": guard(header_link),
            "/json_link": guard(json_link),
            "/token": token,
        }
    )
    server.prefix_routes["/items/"] = guard(reviews)
    return api


@pytest.fixture
def api() -> Iterator[Api]:
    """The paginated JSON API (7 items, 3 per page) on 127.0.0.1."""
    api = make_api()
    api.server.start()
    yield api
    api.release.set()
    api.server.stop()


def file_reply(path: Path, request: Request, content_type: str) -> Reply:
    """A static file with ETag/Last-Modified validators and 304s."""
    if not path.is_file():
        return Reply(404, b"missing", content_type="text/plain")
    data = path.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
    headers = {"ETag": etag, "Last-Modified": formatdate(path.stat().st_mtime, usegmt=True)}
    if request.headers.get("if-none-match") == etag:
        return Reply(304, b"", headers=headers, content_type=content_type)
    return Reply(200, data, headers=headers, content_type=content_type)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[LocalServer, Path]]:
    """Serves ``tmp_path/www`` with ETags; ``/redirect?to=URL`` answers a 302."""
    root = tmp_path / "www"
    root.mkdir()
    server = LocalServer()

    def static(request: Request) -> Reply:
        path = root / request.path.lstrip("/")
        kind = "text/html" if path.suffix == ".html" else "text/csv"
        if path.name == "robots.txt":
            kind = "text/plain"
        return file_reply(path, request, kind)

    def redirect(request: Request) -> Reply:
        return Reply(302, b"", headers={"Location": request.query["to"]}, content_type="text/plain")

    server.routes["/redirect"] = redirect
    server.prefix_routes["/"] = static
    server.start()
    yield server, root
    server.stop()


# ---------------------------------------------------------------------------------- helpers


def write_sources(directory: Path, text: str) -> Path:
    """Write a sources file and return its path."""
    path = directory / "sources.yml"
    path.write_text(text, encoding="utf-8")
    return path


def ingest(env: pytest.MonkeyPatch, sources_file: Path, name: str) -> Any:
    """Load source ``name`` from ``sources_file`` like the ingest task does."""
    from tasks.ingest.load import ingest_source
    from tasks.ingest.sources import load_sources_file
    from tasks.settings import get_settings
    from tasks.warehouse import get_warehouse
    from tests.conftest import reset_caches

    env.setenv("SOURCES_FILE", str(sources_file))
    reset_caches()
    settings = get_settings()
    parsed = load_sources_file(sources_file)
    (config,) = parsed.get([name])
    return ingest_source(config, parsed.base_dir, settings, get_warehouse(settings))


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the test database."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(database_url)
    with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
        return conn.execute(sql).fetchall()


def completed_count(database_url: str, table: str, key: str) -> tuple[int, int]:
    """(rows, distinct keys) of ``raw_data.<table>`` from completed loads only."""
    (row,) = query(
        database_url,
        f"select count(*), count(distinct t.{key}) from raw_data.{table} t "
        "join raw_data._dlt_loads l on l.load_id = t._dlt_load_id and l.status = 0",
    )
    return int(row[0]), int(row[1])
