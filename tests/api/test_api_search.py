"""POST /search over real HTTP: ranking, modes, every filter operator, top_k bounds, limits."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
MODES = ["vector", "hybrid"]


@pytest.fixture(scope="module")
def items() -> list[dict[str, str]]:
    """The demo catalog as loaded by the pipeline."""
    with (REPO / "data" / "demo" / "items.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def search(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("mode", MODES)
def test_a_paraphrase_finds_its_item_first(client: httpx.Client, mode: str) -> None:
    body = search(client, query="lightweight shelter for two hikers", top_k=5, mode=mode)
    top = body["results"][0]
    assert "Backpacking Tent" in top["title"]
    assert not {"shelter", "hikers"} & set(top["title"].lower().split())  # no shared words
    assert body["mode"] == mode
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["namespace"] == "products"
    assert body["took_ms"] > 0
    assert body["group_by"] == "document"  # the default
    assert set(top) == {"document_id", "score", "title", "url", "metadata", "passages"}
    passage = top["passages"][0]
    assert set(passage) == {"chunk_id", "position", "score", "snippet"}
    assert passage["chunk_id"].startswith(top["document_id"]) and passage["position"] == 0
    assert passage["score"] <= top["score"]  # scored from its best chunks
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_chunk_mode_keeps_the_old_shape(client: httpx.Client, mode: str) -> None:
    body = search(
        client, query="lightweight shelter for two hikers", top_k=5, mode=mode, group_by="chunk"
    )
    assert body["group_by"] == "chunk"
    assert len(body["results"]) == 5
    for r in body["results"]:
        assert set(r) == {"chunk_id", "document_id", "score", "title", "url", "snippet", "metadata"}
    assert "Backpacking Tent" in body["results"][0]["title"]


@pytest.mark.parametrize("mode", MODES)
def test_document_mode_returns_distinct_documents(client: httpx.Client, mode: str) -> None:
    body = search(client, query="gift", top_k=30, mode=mode, filter={"category": "toys"})
    ids = [r["document_id"] for r in body["results"]]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert {r["metadata"]["category"] for r in body["results"]} == {"toys"}
    for r in body["results"]:
        assert 1 <= len(r["passages"]) <= 3
        assert all(p["chunk_id"].startswith(r["document_id"] + "#") for p in r["passages"])


def test_bad_group_by_is_422(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "tent", "group_by": "page"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("rule", ["max", "max_bonus", "sum_top"])
def test_group_rule_is_chosen_per_request(client: httpx.Client, rule: str) -> None:
    body = search(
        client, query="waterproof gear for hiking", top_k=5, mode="vector", group_rule=rule
    )
    assert body["group_rule"] == rule
    top = body["results"][0]
    best = top["passages"][0]["score"]
    if rule == "max":
        assert top["score"] == pytest.approx(best, abs=1e-3)
    else:
        assert top["score"] >= best


def test_default_group_rule_and_chunks(client: httpx.Client, api_settings: Any) -> None:
    assert search(client, query="tent", top_k=2)["group_rule"] == api_settings.search_group_rule
    assert search(client, query="tent", top_k=2, group_by="chunk")["group_rule"] is None


def test_unknown_group_rule_is_422_naming_the_rules(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "tent", "group_rule": "mean"})
    assert response.status_code == 422, response.text
    assert "max_bonus" in response.text


def test_hybrid_mode_finds_an_exact_product_name(client: httpx.Client) -> None:
    body = search(client, query="Clearcall", top_k=3, mode="hybrid")
    assert "Clearcall" in body["results"][0]["title"]
    assert "<mark>Clearcall</mark>" in body["results"][0]["passages"][0]["snippet"]


def test_server_timing_reports_embedding_separately(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "cast iron pan"})
    timing = response.headers["server-timing"]
    assert "embed;dur=" in timing and "retrieve;dur=" in timing
    assert response.headers["x-request-id"]


def _every(body: dict[str, Any], predicate: Any) -> None:
    assert body["results"], "the filter matched nothing; the test would prove nothing"
    for r in body["results"]:
        assert predicate(r["metadata"]), r["metadata"]


@pytest.mark.parametrize("mode", MODES)
def test_equality_and_in_filters(
    client: httpx.Client, items: list[dict[str, Any]], mode: str
) -> None:
    body = search(client, query="gift", top_k=20, mode=mode, filter={"category": "kitchen"})
    _every(body, lambda m: m["category"] == "kitchen")
    body = search(client, query="gift", top_k=20, mode=mode, filter={"category": {"$eq": "toys"}})
    _every(body, lambda m: m["category"] == "toys")
    brands = sorted({i["brand"] for i in items})[:2]
    body = search(client, query="gift", top_k=30, mode=mode, filter={"brand": {"$in": brands}})
    _every(body, lambda m: m["brand"] in brands)
    assert {r["metadata"]["brand"] for r in body["results"]} == set(brands)


@pytest.mark.parametrize("mode", MODES)
def test_numeric_range_bounds(client: httpx.Client, items: list[dict[str, Any]], mode: str) -> None:
    item = next(i for i in items if i["price"] and "Tent" in i["name"])
    price = float(item["price"])
    doc_id = f"item:{item['item_id']}"

    def ids(filter_: dict[str, Any]) -> set[str]:
        body = search(client, query=item["name"], top_k=100, mode=mode, filter=filter_)
        return {r["document_id"] for r in body["results"]}

    assert doc_id in ids({"price": {"$gte": price}})
    assert doc_id in ids({"price": {"$lte": price}})
    assert doc_id not in ids({"price": {"$gt": price}})
    assert doc_id not in ids({"price": {"$lt": price}})
    body = search(
        client, query="tent", top_k=50, mode=mode, filter={"price": {"$gte": 50, "$lt": 150}}
    )
    _every(body, lambda m: 50 <= m["price"] < 150)


@pytest.mark.parametrize("mode", MODES)
def test_date_range_and_combined_filters(client: httpx.Client, mode: str) -> None:
    body = search(
        client, query="tent", top_k=50, mode=mode, filter={"updated_at": {"$gte": "2026-06-01"}}
    )
    _every(body, lambda m: m["updated_at"] >= "2026-06-01")
    body = search(
        client,
        query="tent",
        top_k=50,
        mode=mode,
        filter={"category": "outdoor", "price": {"$lt": 200}, "updated_at": {"$lt": "2026-09-01"}},
    )
    _every(
        body,
        lambda m: (
            m["category"] == "outdoor" and m["price"] < 200 and m["updated_at"] < "2026-09-01"
        ),
    )


@pytest.mark.parametrize(
    ("top_k", "status"), [(0, 422), (-1, 422), (101, 422), ("ten", 422), (1, 200), (100, 200)]
)
def test_top_k_bounds(client: httpx.Client, top_k: Any, status: int) -> None:
    response = client.post("/search", json={"query": "tent", "top_k": top_k})
    assert response.status_code == status, response.text
    if status == 200:
        assert len(response.json()["results"]) == top_k


def test_top_k_defaults_to_ten(client: httpx.Client) -> None:
    assert len(search(client, query="tent")["results"]) == 10


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"colour": "red"},
        {"title": "Tent"},
        {"price": {"$regex": "1.*"}},
        {"price": {"$in": []}},
        {"price": {}},
        {"category'; drop table products; --": "x"},
        {"price": {"$gt": [1, 2]}},
        ["category", "kitchen"],
        # Values that can never match the column's declared dbt data_type:
        {"price": "cheap"},
        {"price": {"$in": [10, "20"]}},
        {"review_count": {"$gte": True}},
        {"category": 5},
        {"updated_at": {"$gte": 2026}},
        {"updated_at": {"$gte": "last week"}},
    ],
)
def test_bad_filters_are_422_with_a_clear_message(client: httpx.Client, bad_filter: Any) -> None:
    response = client.post("/search", json={"query": "tent", "filter": bad_filter})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"]
    assert "Traceback" not in response.text
    assert "input" not in str(body["detail"])  # no echo of what was sent


def test_undeclared_key_message_names_the_allowed_keys(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "tent", "filter": {"colour": "red"}})
    assert "category" in response.json()["detail"] and "colour" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""},
        {"query": "   "},
        {"query": "tent", "mode": "keyword"},
        {"query": "tent", "namespace": "Robert'); DROP"},
        {"query": "tent", "namespace": "unknown_ns"},
        {"query": "tent", "surprise": 1},
        {"query": "x" * 1001},
        {"query": "word " * 150},
    ],
)
def test_invalid_requests_are_422(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == 422, response.text


def test_query_token_limit_is_checked_separately_from_characters(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": "word " * 150})  # 750 chars < 1000
    assert "SEARCH_MAX_QUERY_TOKENS" in response.json()["detail"]


def test_oversize_body_is_413(client: httpx.Client) -> None:
    big = {"query": "tent", "filter": {"brand": {"$in": ["x" * 100] * 200}}}  # ~20 KB
    response = client.post("/search", json=big)
    assert response.status_code == 413
    assert "SEARCH_API_MAX_BODY_BYTES" in response.json()["detail"]


def test_oversize_streamed_body_without_length_is_413(client: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"query": "'
        for _ in range(40):
            yield b"a" * 1024
        yield b'"}'

    response = client.post(
        "/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_deadline_exceeded_is_504(hasty_api_url: str) -> None:
    from tests.api.conftest import API_KEYS

    response = httpx.post(
        f"{hasty_api_url}/search",
        json={"query": "tent"},
        headers={"X-API-Key": API_KEYS[0]},
        timeout=60,
    )
    assert response.status_code == 504
    assert "SEARCH_TIMEOUT_S" in response.json()["detail"] or "in time" in response.json()["detail"]


@pytest.mark.parametrize("group_by", ["document", "chunk"])
@pytest.mark.parametrize("mode", MODES)
def test_pages_follow_one_ranking(client: httpx.Client, mode: str, group_by: str) -> None:
    key = "document_id" if group_by == "document" else "chunk_id"
    q = {"query": "waterproof gear for hiking", "mode": mode, "group_by": group_by}
    full = search(client, top_k=10, **q)
    first = search(client, top_k=5, **q)
    second = search(client, top_k=5, offset=5, **q)
    ids = [r[key] for r in full["results"]]
    assert [r[key] for r in first["results"] + second["results"]] == ids
    assert len(set(ids)) == 10


@pytest.mark.parametrize(("offset", "top_k"), [(-1, 10), (200, 1), (150, 100)])
def test_paging_depth_is_bounded(client: httpx.Client, offset: int, top_k: int) -> None:
    response = client.post("/search", json={"query": "tent", "top_k": top_k, "offset": offset})
    assert response.status_code == 422, response.text


def test_concurrent_searches_share_query_embedding_calls(api_settings) -> None:  # type: ignore[no-untyped-def]
    """16 clients at once: every one gets its own ranked answer, and the model embedded their
    queries in fewer calls than there were queries; a repeated query is not embedded again."""
    import threading

    from api.main import create_app
    from tests.api.conftest import API_KEYS, serve

    app = create_app(api_settings.model_copy(update={"search_batch_wait_ms": 20.0}))
    queries = [f"{word} for the trail, number {i}" for i, word in enumerate(["tent"] * 16)]
    answers: dict[str, list[str]] = {}
    gen = serve(api_settings, app)
    url = next(gen)
    try:
        start = threading.Barrier(len(queries))

        def ask(q: str) -> None:
            with httpx.Client(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as c:
                start.wait()
                r = c.post("/search", json={"query": q, "top_k": 3, "mode": "vector"})
                assert r.status_code == 200, r.text
                answers[q] = [hit["document_id"] for hit in r.json()["results"]]

        threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        batcher = app.state.service.batcher
        assert len(answers) == 16 and all(len(a) == 3 for a in answers.values())
        assert batcher.embedded == 16 and batcher.calls < 16
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as c:
            again = c.post("/search", json={"query": queries[0], "top_k": 3, "mode": "vector"})
        assert [h["document_id"] for h in again.json()["results"]] == answers[queries[0]]
        assert batcher.embedded == 16 and batcher.cache_hits == 1
    finally:
        gen.close()
