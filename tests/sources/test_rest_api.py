"""REST API kind against a real paginated JSON API on 127.0.0.1 and a real Postgres."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.errors import SourceError
from tests.sources.conftest import (
    API_KEY,
    BASIC,
    TOKEN,
    Api,
    completed_count,
    ingest,
    query,
    write_sources,
)
from tests.sources.servers import Reply

PAGINATORS = {
    "page_number": "{type: page_number, base_page: 1, page_param: page}",
    "offset": "{type: offset, limit: 3, total_path: total}",
    "cursor": "{type: cursor, cursor_path: next_cursor, cursor_param: cursor}",
    "header_link": "{type: header_link}",
    "json_link": "{type: json_link, next_url_path: next}",
}
SELECTORS = {"json_link": "results", "header_link": "$"}


def api_sources(api: Api, path: str, paginator: str, extra: str = "", auth: str = "") -> str:
    selector = SELECTORS.get(path, "data")
    return f"""
sources:
  - name: shop
    kind: rest_api
    http: {{backoff_s: 0.01, max_attempts: 4, timeout_s: 2}}
    client:
      base_url: {api.url}
      auth: {auth or "{type: bearer}"}
    resources:
      - name: items
        primary_key: id
        write_disposition: merge
        columns: {{id: bigint, price: double}}
        endpoint:
          path: /{path}
          data_selector: "{selector}"
          paginator: {paginator}
{extra}"""


def query_key_sources(directory: Path, api: Api) -> Path:
    """A sources file for the paged endpoint with the API key in the query string."""
    auth = "{type: api_key, name: api_key, location: query}"
    text = api_sources(api, "page_number", PAGINATORS["page_number"], auth=auth)
    return write_sources(directory, text)


@pytest.mark.parametrize("path", list(PAGINATORS))
def test_every_paginator_loads_all_pages_and_reruns_safely(
    path: str, api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    sources = write_sources(tmp_path, api_sources(api, path, PAGINATORS[path]))

    first = ingest(env, sources, "shop")
    pages = len(api.server.hits(f"/{path}"))
    second = ingest(env, sources, "shop")

    assert first.rows_by_table == {"items": 7}
    assert pages >= 3  # 7 items, 3 per page
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.server.requests)
    assert second.rows_by_table == {"items": 7}
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_incremental_cursor_is_kept_in_state_and_sent(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    endpoint = """          params:
            updated_since:
              type: incremental
              cursor_path: updated_at
              initial_value: "2000-01-01T00:00:00Z"
"""
    text = api_sources(api, "page_number", PAGINATORS["page_number"]).replace(
        "          paginator:", endpoint + "          paginator:"
    )
    sources = write_sources(tmp_path, text)

    first = ingest(env, sources, "shop")
    assert first.rows_by_table == {"items": 7}
    assert api.server.hits("/page_number")[0].query["updated_since"] == "2000-01-01T00:00:00Z"

    api.items[0]["updated_at"] = "2024-02-01T00:00:00Z"  # changed row
    api.add_items(8, 2, "2024-02-01T00:00:00Z")  # two new rows
    api.server.clear()
    second = ingest(env, sources, "shop")

    assert api.server.hits("/page_number")[0].query["updated_since"] == "2024-01-01T00:00:00Z"
    assert second.rows_by_table == {"items": 3}
    assert completed_count(database_url, "items", "id") == (9, 9)
    ((updated,),) = query(database_url, "select updated_at from raw_data.items where id = 1")
    assert updated.isoformat().startswith("2024-02-01")


def test_parent_child_resources(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    child = """      - name: reviews
        primary_key: review_id
        include_from_parent: [name]
        endpoint:
          path: /items/{item_id}/reviews
          paginator: {type: single_page}
          params:
            item_id: {type: resolve, resource: items, field: id}
"""
    sources = write_sources(
        tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"], extra=child)
    )
    for _ in range(2):
        result = ingest(env, sources, "shop")
        assert result.rows_by_table == {"items": 7, "reviews": 7}
    assert completed_count(database_url, "reviews", "review_id") == (7, 7)
    assert query(database_url, "select _items_name from raw_data.reviews where review_id = 30")


@pytest.mark.parametrize(
    ("auth", "secrets"),
    [
        ("{type: api_key, name: X-API-Key, location: header}", {"API_KEY": API_KEY}),
        ("{type: api_key, name: api_key, location: query}", {"API_KEY": API_KEY}),
        ("{type: http_basic, username: alice}", {"PASSWORD": BASIC[1]}),
        (
            "{type: oauth2_client_credentials, access_token_url: TOKEN_URL}",
            {"CLIENT_ID": "cid", "CLIENT_SECRET": "csecret"},
        ),
    ],
)
def test_auth_kinds_with_secrets_from_env(
    auth: str,
    secrets: dict[str, str],
    api: Api,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
) -> None:
    for key, value in secrets.items():
        env.setenv(f"SOURCES__SHOP__{key}", value)
    auth = auth.replace("TOKEN_URL", f"{api.url}/token")
    sources = write_sources(
        tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"], auth=auth)
    )
    assert ingest(env, sources, "shop").rows_by_table == {"items": 7}
    assert not [r for r in api.server.requests if r.path != "/token" and r.path == "/401"]
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_missing_secret_names_the_variable(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.delenv("SOURCES__SHOP__TOKEN", raising=False)
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    with pytest.raises(Exception, match="SOURCES__SHOP__TOKEN"):
        ingest(env, sources, "shop")
    assert api.server.requests == []


def test_wrong_credentials_fail_fast_with_url_and_status(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", "wrong")
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    with pytest.raises(SourceError, match=r"/page_number.*HTTP 401") as info:
        ingest(env, sources, "shop")
    assert not info.value.retryable
    assert len(api.server.hits("/page_number")) == 1  # a 401 is not retried


def test_429_with_retry_after_and_500s_are_retried(
    api: Api,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    api.server.faults["/page_number"] = [
        Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
        Reply(500, {"error": "boom"}),
        Reply(503, {"error": "busy"}),
    ]
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    with caplog.at_level("WARNING", logger="tasks.ingest.sources.http"):
        result = ingest(env, sources, "shop")

    assert result.rows_by_table == {"items": 7}
    assert len(api.server.hits("/page_number")) == 3 + 4  # 3 faults, then 4 pages (last empty)
    retries = [r.getMessage() for r in caplog.records if "retry in" in r.getMessage()]
    assert (
        "HTTP 429, retry in 1.0s" in retries[0]
    )  # the server's Retry-After, not the 0.01s backoff
    assert "HTTP 500" in retries[1] and "HTTP 503" in retries[2]
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_persistent_500s_give_up_after_max_attempts(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    api.server.faults["/page_number"] = [Reply(500, {"error": "boom"})] * 10
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    with pytest.raises(SourceError, match="HTTP 500 after 4 attempts") as info:
        ingest(env, sources, "shop")
    # Final: the session already tried 4 times, the Prefect task must not multiply that.
    assert not info.value.retryable
    assert len(api.server.hits("/page_number")) == 4
    assert query(
        database_url,
        "select count(*) from information_schema.tables where table_name = 'items'",
    ) == [(0,)]


def test_timeouts_are_retried(api: Api, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    gate = threading.Event()

    def hang(request: object) -> Reply:
        gate.wait(5)
        return Reply(body={"data": []})

    api.server.faults["/page_number"] = [hang, hang]
    sources = write_sources(
        tmp_path,
        api_sources(api, "page_number", PAGINATORS["page_number"]).replace(
            "timeout_s: 2", "timeout_s: 0.3"
        ),
    )
    try:
        result = ingest(env, sources, "shop")
    finally:
        gate.set()
    assert result.rows_by_table == {"items": 7}
    assert len(api.server.hits("/page_number")) == 2 + 4


def test_malformed_json_fails_with_the_url(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    api.server.faults["/page_number"] = [Reply(200, b'{"data": [{"id": 1,')]
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    with pytest.raises(
        SourceError, match=r"GET http://127\.0\.0\.1:\d+/page_number\?page=1: .*not valid JSON"
    ):
        ingest(env, sources, "shop")
    assert query(
        database_url, "select count(*) from information_schema.tables where table_name = 'items'"
    ) == [(0,)]


@pytest.mark.parametrize("contract", ["freeze", "quarantine"])
def test_contract_on_api_rows(
    contract: str, api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    api.items[3]["price"] = "call us"
    text = api_sources(api, "page_number", PAGINATORS["page_number"]).replace(
        "kind: rest_api", f"kind: rest_api\n    contract: {contract}"
    )
    sources = write_sources(tmp_path, text)
    if contract == "freeze":
        with pytest.raises(SourceError, match="column 'price': value 'call us' is not a valid"):
            ingest(env, sources, "shop")
        return
    for _ in range(2):
        result = ingest(env, sources, "shop")
        assert result.rows_by_table == {"items": 6, "items__rejected": 1}
    assert completed_count(database_url, "items", "id") == (6, 6)
    ((reason, raw),) = query(
        database_url, "select reason, raw_record from raw_data.items__rejected limit 1"
    )
    assert "'call us'" in reason and '"id": 4' in raw
    columns = {
        r[0]
        for r in query(
            database_url,
            "select column_name from information_schema.columns "
            "where table_schema = 'raw_data' and table_name = 'items__rejected'",
        )
    }
    assert {"reason", "raw_record", "origin", "rejected_at", "_dlt_load_id"} <= columns


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json"])
def test_html_page_with_200_fails_naming_request_status_type_and_body(
    content_type: str, api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """A proxy's or login page's HTML, served with 200 (labelled HTML, or mislabelled JSON)."""
    env.setenv("SOURCES__SHOP__API_KEY", API_KEY)
    page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Session expired"
    api.server.faults["/page_number"] = [Reply(200, page, content_type=content_type)]
    sources = query_key_sources(tmp_path, api)
    with pytest.raises(SourceError) as info:
        ingest(env, sources, "shop")
    message = str(info.value)
    assert re.search(r"GET http://127\.0\.0\.1:\d+/page_number\?page=1&api_key=\*\*\*: ", message)
    assert f"HTTP 200 ({content_type})" in message
    assert "<!DOCTYPE html><html><head><title>Sign in" in message
    assert API_KEY not in message
    assert not info.value.retryable
    assert query(
        database_url, "select count(*) from information_schema.tables where table_name = 'items'"
    ) == [(0,)]
