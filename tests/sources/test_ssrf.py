"""SSRF guard: web and CSV-by-URL refuse private addresses, on the first hop, on redirects and
after DNS rebinding."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks.errors import SourceError
from tasks.sources import http
from tests.sources.conftest import ingest, query, write_sources
from tests.sources.servers import LocalServer, Reply

PUBLIC = "93.184.216.34"
#: A loopback address the tests treat as public, so a local server can stand in for a public site.
STAND_IN = "127.0.0.2"


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests resolve, for everyone (guard and connections alike): ``name -> answers``,
    one per lookup, the last repeated. ``127.0.0.2`` counts as a public address."""
    answers: dict[str, list[str]] = {}
    real_resolve = socket.getaddrinfo
    real_blocked = http.is_blocked_address

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(
        http, "is_blocked_address", lambda a: str(a) != STAND_IN and real_blocked(a)
    )
    return answers


@pytest.fixture
def public_site(fake_dns: dict[str, list[str]]) -> Iterator[LocalServer]:
    """``http://public.test:<port>``: a "public" site whose ``/redirect?to=URL`` answers a 302."""
    server = LocalServer(host=STAND_IN)
    server.routes["/redirect"] = lambda request: Reply(
        302, b"", headers={"Location": request.query["to"]}, content_type="text/plain"
    )
    server.routes["/items.csv"] = lambda request: Reply(200, b"id\n1\n", content_type="text/csv")
    fake_dns["public.test"] = [STAND_IN]
    server.start()
    yield server
    server.stop()


def web(url: str) -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{url}"]
    # Domains allowed on purpose: the address guard must hold even where the domain rules allow.
    allowed_domains: [public.test, localhost, 127.0.0.1, 169.254.169.254]
    respect_robots_txt: false
    delay_s: 0
"""


def csv_url(url: str) -> str:
    return f"""
sources:
  - name: files
    kind: csv
    http: {{max_attempts: 1}}
    resources:
      - table: items
        path: "{url}"
        primary_key: id
"""


@pytest.mark.parametrize("kind", ["web", "csv"])
def test_private_address_refused_without_a_request(
    kind: str,
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, root = file_server
    (root / "items.csv").write_text("id\n1\n")
    (root / "index.html").write_text("<html><title>x</title></html>")
    text = web(f"{server.url}/index.html") if kind == "web" else csv_url(f"{server.url}/items.csv")
    sources = write_sources(tmp_path, text)
    with pytest.raises(SourceError, match="non-public address 127.0.0.1"):
        ingest(env, sources, "site" if kind == "web" else "files")
    assert server.requests == []


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:{port}/items.csv", "http://169.254.169.254/latest/meta-data/"]
)
@pytest.mark.parametrize("kind", ["web", "csv"])
def test_redirect_to_private_address_refused(
    kind: str,
    target: str,
    public_site: LocalServer,
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    private, root = file_server
    (root / "items.csv").write_text("id\n1\n")
    hop = target.format(port=private.port)
    start = f"http://public.test:{public_site.port}/redirect?to={hop}"
    sources = write_sources(tmp_path, web(start) if kind == "web" else csv_url(start))

    with pytest.raises(SourceError, match="Refusing .*non-public address"):
        ingest(env, sources, "site" if kind == "web" else "files")

    assert [r.path for r in public_site.requests] == ["/redirect"]
    assert private.requests == []  # the private hop was never fetched


def test_dns_rebinding_cannot_reach_a_private_address(
    fake_dns: dict[str, list[str]], env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """A name that answers "public" to the guard and then "private" (DNS rebinding): the
    connection goes to the address the guard checked, never to the second answer."""
    public = LocalServer(host=STAND_IN)
    public.routes["/items.csv"] = lambda request: Reply(200, b"id\n1\n2\n", content_type="text/csv")
    private = LocalServer(host="127.0.0.1", port=public.port)  # same port, private address
    private.routes["/items.csv"] = lambda request: Reply(200, b"id\n666\n", content_type="text/csv")
    fake_dns["rebind.test"] = [STAND_IN, "127.0.0.1"]
    public.start()
    private.start()
    try:
        url = f"http://rebind.test:{public.port}/items.csv"
        result = ingest(env, write_sources(tmp_path, csv_url(url)), "files")
    finally:
        public.stop()
        private.stop()

    assert private.requests == []
    (request,) = public.requests
    assert request.headers["host"] == f"rebind.test:{public.port}"  # the name, not the address
    assert result.rows_by_table == {"items": 2}
    assert query(database_url, "select id from raw_data.items order by id") == [("1",), ("2",)]


def test_https_keeps_the_name_for_sni_and_certificate_check(
    fake_dns: dict[str, list[str]],
) -> None:
    """The pool connects to the checked address; TLS still verifies the host name."""
    fake_dns["secure.test"] = [PUBLIC]
    request = requests.Request("GET", "https://secure.test/data.csv").prepare()
    host, pool = http.PinnedAddressAdapter().build_connection_pool_key_attributes(request, True)
    assert (host["host"], host["port"]) == (PUBLIC, None)
    assert pool["server_hostname"] == pool["assert_hostname"] == "secure.test"
    assert request.headers["Host"] == "secure.test"


def test_metadata_and_private_ranges_are_blocked() -> None:
    for url in (
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
    ):
        with pytest.raises(http.BlockedAddressError):
            http.check_public_url(url)
    http.check_public_url(f"http://{PUBLIC}/")  # a public literal passes (no DNS needed)
