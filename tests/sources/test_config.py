"""The sources file: every kind parses; a malformed file fails before any load, naming the
file, line and field; secrets are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.ingest.sources import load_sources_file
from tasks.ingest.sources.config import CsvSourceConfig, RestApiSourceConfig, WebSourceConfig
from tests.conftest import REPO

FULL = """
sources:
  - name: demo
    kind: csv
    resources:
      - {table: items, path: data.csv, primary_key: id}
  - name: shop
    kind: rest_api
    contract: quarantine
    client:
      base_url: https://api.example.com/v1
      auth: {type: oauth2_client_credentials, access_token_url: https://api.example.com/token}
      paginator: {type: json_link, next_url_path: links.next}
    resources:
      - name: orders
        primary_key: id
        endpoint:
          path: orders
          params: {status: open}
          incremental: {cursor_path: updated_at, start_param: since, initial_value: "2024-01-01"}
  - name: docs
    kind: web
    seeds: [https://docs.example.com/]
    max_pages: 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(text)
    return path


def test_every_kind_parses(tmp_path: Path) -> None:
    parsed = load_sources_file(write(tmp_path, FULL))
    demo, shop, docs = parsed.get(None)
    assert isinstance(demo, CsvSourceConfig) and demo.resources[0].write_disposition == "merge"
    assert isinstance(shop, RestApiSourceConfig) and shop.contract == "quarantine"
    assert isinstance(docs, WebSourceConfig) and docs.domains == ["docs.example.com"]
    assert parsed.base_dir == tmp_path


def test_repository_sources_file_is_valid() -> None:
    assert [s.name for s in load_sources_file(REPO / "sources.yml").sources] == ["demo"]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("max_pages: 10", "max_pages: many", "max_pages"),
        ("kind: web", "kind: ftp", "kind"),
        ("{type: json_link, next_url_path: links.next}", "{type: pages}", "paginator"),
        ("path: data.csv, primary_key: id", "path: data.csv", "primary_key"),
        ("base_url: https://api.example.com/v1", "base_url: ftp://x", "base_url"),
        ("name: orders", "name: Orders!", "name"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert FULL.count(old) == 1
    text = FULL.replace(old, new)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if new in t)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sources_file(path)
    message = str(info.value)
    assert f"{path}:{line}:" in message, message
    assert field in message


def test_secret_in_file_is_refused_with_the_variable_to_use(tmp_path: Path) -> None:
    text = FULL.replace(
        "auth: {type: oauth2_client_credentials, access_token_url: https://api.example.com/token}",
        "auth: {type: bearer, token: hunter2}",
    )
    with pytest.raises(ConfigError, match="SOURCES__<NAME>__<FIELD>") as info:
        load_sources_file(write(tmp_path, text))
    assert "hunter2" not in str(info.value)


def test_authorization_header_is_refused(tmp_path: Path) -> None:
    text = FULL.replace(
        "paginator: {type: json_link, next_url_path: links.next}",
        "paginator: {type: json_link}\n      headers: {Authorization: Bearer x}",
    )
    with pytest.raises(ConfigError, match="use `auth` instead"):
        load_sources_file(write(tmp_path, text))


def test_invalid_yaml_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sources_file(write(tmp_path, "sources: [\n"))
    twice = FULL + "  - name: docs\n    kind: web\n    seeds: [https://x.example/]\n"
    with pytest.raises(ConfigError, match="twice"):
        load_sources_file(write(tmp_path, twice))
