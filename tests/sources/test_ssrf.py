"""SSRF guard: web and CSV-by-URL refuse private addresses, on the first hop and on redirects."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import SourceError
from tasks.sources import http
from tests.sources.conftest import ingest, write_sources
from tests.sources.servers import LocalServer

PUBLIC = "93.184.216.34"


@pytest.fixture
def public_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard sees the name ``localhost`` as a public address (connections still go to
    127.0.0.1): stands in for a public site that redirects to a private address."""
    real = socket.getaddrinfo

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(http, "_resolve", resolve)


def web(url: str) -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{url}"]
    # Domains allowed on purpose: the address guard must hold even where the domain rules allow.
    allowed_domains: [localhost, 127.0.0.1, 169.254.169.254]
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
    public_localhost: None,
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, root = file_server
    (root / "items.csv").write_text("id\n1\n")
    hop = target.format(port=server.port)
    start = f"http://localhost:{server.port}/redirect?to={hop}"
    sources = write_sources(tmp_path, web(start) if kind == "web" else csv_url(start))

    with pytest.raises(SourceError, match="Refusing .*non-public address"):
        ingest(env, sources, "site" if kind == "web" else "files")

    assert [r.path for r in server.requests] == ["/redirect"]  # the private hop was never fetched


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
