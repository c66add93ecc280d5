"""Auth, documents, health/readiness, CORS, access logs, error hygiene, and a schema fuzz run."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from tests.api.conftest import API_KEYS, CORS_ORIGIN


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": API_KEYS[0][:-1]}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic " + API_KEYS[0]}, 401),
        ({"X-API-Key": API_KEYS[0]}, 200),
        ({"X-API-Key": API_KEYS[1]}, 200),
        ({"Authorization": f"Bearer {API_KEYS[1]}"}, 200),
    ],
)
def test_api_keys(api_url: str, headers: dict[str, str], status: int) -> None:
    response = httpx.post(f"{api_url}/search", json={"query": "tent"}, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    doc = httpx.get(f"{api_url}/documents/item:1", headers=headers, timeout=60)
    assert doc.status_code == status


def test_probes_need_no_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["index:products"] == "ok"


def test_document_with_its_chunks(client: httpx.Client) -> None:
    top = client.post("/search", json={"query": "lightweight shelter for two hikers"}).json()
    doc_id = top["results"][0]["document_id"]
    response = client.get(f"/documents/{doc_id}")
    assert response.status_code == 200
    doc = response.json()
    assert doc["document_id"] == doc_id
    assert doc["title"] == top["results"][0]["title"]
    assert doc["chunks"][0]["chunk_id"] == top["results"][0]["passages"][0]["chunk_id"]
    assert doc["chunks"][0]["position"] == 0
    assert doc["title"] in doc["chunks"][0]["text"]
    assert doc["metadata"]["category"]


def test_unknown_document_is_404_and_bad_namespace_422(client: httpx.Client) -> None:
    response = client.get("/documents/item:999999")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "request_id"}
    assert client.get("/documents/item:1", params={"namespace": "nope"}).status_code == 422
    assert client.get("/documents/item:1", params={"namespace": "No-Way"}).status_code == 422


def test_empty_index_is_not_ready(empty_api_url: str) -> None:
    assert httpx.get(f"{empty_api_url}/healthz").status_code == 200
    response = httpx.get(f"{empty_api_url}/readyz", timeout=60)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["embedder"] == "ok"
    assert body["checks"]["index:products"].startswith("empty")
    searched = httpx.post(
        f"{empty_api_url}/search",
        json={"query": "tent", "mode": "hybrid"},
        headers={"X-API-Key": API_KEYS[0]},
        timeout=60,
    )
    assert searched.status_code == 200
    assert searched.json()["results"] == []


def test_cors_is_closed_by_default(api_url: str) -> None:
    preflight = {
        "Origin": CORS_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }
    response = httpx.options(f"{api_url}/search", headers=preflight)
    assert "access-control-allow-origin" not in response.headers


def test_cors_opens_only_for_configured_origins(empty_api_url: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }
    ok = httpx.options(f"{empty_api_url}/search", headers={"Origin": CORS_ORIGIN, **preflight})
    assert ok.headers["access-control-allow-origin"] == CORS_ORIGIN
    other = httpx.options(
        f"{empty_api_url}/search", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


def test_access_log_is_json_without_the_query(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    secret_query = "my very private question about tents"
    with caplog.at_level(logging.INFO, logger="api.access"):
        response = client.post(
            "/search", json={"query": secret_query}, headers={"X-Request-ID": "req-123"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "req-123"
        # The server thread writes the line after the response has gone out: wait for it.
        line = None
        for _ in range(100):
            lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "api.access"]
            line = next((x for x in lines if x["request_id"] == "req-123"), None)
            if line:
                break
            time.sleep(0.05)
    assert line is not None, "no access log line for the request"
    assert line["method"] == "POST" and line["path"] == "/search" and line["status"] == 200
    assert line["duration_ms"] > 0 and line["embed_ms"] >= 0 and line["retrieve_ms"] >= 0
    assert not any("private" in r.getMessage() for r in caplog.records)


def test_openapi_schema_and_docs(anonymous: httpx.Client) -> None:
    schema = anonymous.get("/openapi.json").json()
    assert {"/search", "/documents/{document_id}", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"]
    )
    schemes = schema["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    assert anonymous.get("/docs").status_code == 200


def test_create_app_refuses_to_run_open_without_keys(api_settings) -> None:  # type: ignore[no-untyped-def]
    from api.main import create_app
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="SEARCH_API_KEYS"):
        create_app(api_settings.model_copy(update={"search_api_keys": None}))
    create_app(
        api_settings.model_copy(update={"search_api_keys": None, "search_api_auth_disabled": True})
    )


def test_the_service_runs_its_local_model_on_the_threads_configured(
    demo_index: dict[str, object],
) -> None:
    """SEARCH_EMBED_THREADS (default 1) is applied when the service loads its local model."""
    import torch

    from api.service import SearchService
    from tasks.settings import Settings
    from tests.api.conftest import demo_settings

    assert Settings.model_fields["search_embed_threads"].default == 1
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    service = SearchService(demo_settings(demo_index, search_embed_threads=wanted))
    try:
        service.start()
        assert torch.get_num_threads() == wanted
        assert service.batcher is not None
        assert len(service.batcher.embedder.embed(["tent for two"])[0]) > 0
    finally:
        service.close()
        torch.set_num_threads(before)
