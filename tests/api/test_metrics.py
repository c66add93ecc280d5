"""``GET /metrics``: request counts and latencies, embed/retrieve histograms, errors by status,
pool saturation (``psycopg_pool``) and index freshness after the session's real pipeline run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tasks.settings import Settings
from tests.api.conftest import API_KEYS, demo_settings, serve

KEY = {"X-API-Key": API_KEYS[0]}


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape."""
    response = httpx.get(f"{url}/metrics", headers=KEY, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    """The value of the one sample of ``name`` with ``labels`` (0 if absent)."""
    found = [
        v for got, v in samples.get(name, []) if all(got.get(k) == x for k, x in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


@pytest.fixture(scope="module")
def own_url(api_settings: Settings) -> Iterator[str]:
    """A server of its own, so its counters hold only this module's requests."""
    yield from serve(api_settings)


def test_requests_are_counted_by_route_template_and_status(own_url: str) -> None:
    with httpx.Client(base_url=own_url, headers=KEY, timeout=60) as c:
        assert c.post("/search", json={"query": "tent", "mode": "vector"}).status_code == 200
        assert c.post("/search", json={"query": "tent", "mode": "hybrid"}).status_code == 200
        assert c.post("/search", json={"query": ""}).status_code == 422
        assert c.get("/documents/item:1").status_code == 200
        assert c.get("/documents/item:999999").status_code == 404
        assert c.get("/no/such/path").status_code == 404
    assert httpx.post(f"{own_url}/search", json={"query": "tent"}).status_code == 401
    assert httpx.get(f"{own_url}/metrics").status_code == 401  # metrics need the key too

    m = scrape(own_url)
    total = "search_api_requests_total"
    assert value(m, total, method="POST", route="/search", status="200") == 2
    assert value(m, total, method="POST", route="/search", status="422") == 1
    assert value(m, total, method="POST", route="/search", status="401") == 1
    assert value(m, total, method="GET", route="/documents/{document_id}", status="200") == 1
    assert value(m, total, method="GET", route="/documents/{document_id}", status="404") == 1
    assert value(m, total, method="GET", route="unmatched", status="404") == 1
    assert value(m, total, method="GET", route="/metrics", status="401") == 1
    assert not any("item:" in labels.get("route", "") for labels, _ in m[total])

    latency = "search_api_request_duration_seconds_count"
    assert value(m, latency, method="POST", route="/search") == 4
    assert value(m, "search_api_errors_total", status="404") == 2
    assert value(m, "search_api_errors_total", status="422") == 1
    assert value(m, "search_api_errors_total", status="401") == 2
    assert value(m, "search_api_errors_total", status="200") == 0

    # Embedding and retrieval apart, once per search that ran (not the 422/401 ones).
    for phase in ("embed", "retrieve"):
        for mode in ("vector", "hybrid"):
            assert value(m, f"search_api_{phase}_duration_seconds_count", mode=mode) == 1
            assert value(m, f"search_api_{phase}_duration_seconds_sum", mode=mode) > 0
            assert (
                value(m, f"search_api_{phase}_duration_seconds_bucket", mode=mode, le="+Inf") == 1
            )

    assert value(m, "search_api_db_pool_max") == 4  # SEARCH_API_POOL_SIZE's default
    assert 1 <= value(m, "search_api_db_pool_size") <= 4
    assert value(m, "search_api_db_pool_in_use") == 0
    assert value(m, "search_api_db_requests_num_total") >= 4
    assert value(m, "search_api_db_requests_errors_total") == 0


def test_index_freshness_after_the_pipeline_run(own_url: str, api_settings: Settings) -> None:
    """The demo pipeline indexed every document: nothing pending, its run completed, and the
    newest indexed ``updated_at`` is the documents model's newest."""
    conninfo = api_settings.database_url.get_secret_value()  # type: ignore[union-attr]
    with psycopg.connect(conninfo) as conn:
        newest, documents = conn.execute(
            "select extract(epoch from max(updated_at)), count(*) from analytics.documents"
        ).fetchone()  # type: ignore[misc]
        finished = conn.execute(
            "select extract(epoch from max(finished_at)) from index_state.runs "
            "where status = 'completed' and logical_namespace = 'products'"
        ).fetchone()[0]  # type: ignore[index]
    m = scrape(own_url)
    ns = {"namespace": "products"}
    assert value(m, "search_index_freshness_up") == 1
    assert value(m, "search_index_pending_chunks", **ns) == 0
    assert value(m, "search_index_written_chunks", **ns) >= documents
    assert "search_index_oldest_pending_updated_at_seconds" not in m  # nothing pending
    assert value(m, "search_index_newest_written_updated_at_seconds", **ns) == float(newest)
    assert value(m, "search_index_last_success_timestamp_seconds", **ns) == float(finished)
    assert value(m, "search_index_last_run_failed", **ns) == 0


def test_saturated_pool_answers_503_and_shows_in_the_metrics(demo_index: dict[str, Any]) -> None:
    """One connection, held by the test: the request waits half its deadline, then 503."""
    settings = demo_settings(demo_index, search_api_pool_size=1, search_timeout_s=2.0)
    app = create_app(settings)
    with contextmanager(serve)(settings, app) as url:
        with app.state.service.searcher():
            held = scrape(url)
            busy = httpx.post(f"{url}/search", json={"query": "tent"}, headers=KEY, timeout=60)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert "SEARCH_API_POOL_SIZE" in busy.json()["detail"]
        assert value(held, "search_api_db_pool_in_use") == 1
        assert value(held, "search_api_db_pool_available") == 0
        after = scrape(url)
        assert value(after, "search_api_db_requests_errors_total") == 1
        assert value(after, "search_api_db_requests_queued_total") >= 1
        assert value(after, "search_api_errors_total", status="503") == 1
        again = httpx.post(f"{url}/search", json={"query": "tent"}, headers=KEY, timeout=60)
        assert again.status_code == 200, again.text  # the connection came back to the pool


def test_ledger_freshness_reports_pending_changes_and_failed_runs(pg_server: str) -> None:
    """Through the ledger's own writers: a failed run left one changed chunk pending."""
    from tasks.index.chunking import Chunk, metadata_hash, text_hash
    from tasks.index.ledger import Ledger, freshness
    from tasks.warehouse import Warehouse
    from tests.conftest import create_database

    warehouse = Warehouse(conninfo=create_database(pg_server), embedded=False)
    with warehouse.connect(autocommit=True) as conn:
        assert freshness(conn) == []  # no indexing run created the ledger yet

    def chunk(n: int, updated_at: str) -> Chunk:
        meta = {"updated_at": updated_at}
        text = f"text {n}"
        return Chunk(f"doc:{n}#0", f"doc:{n}", 0, text, meta, text_hash(text), metadata_hash(meta))

    ledger = Ledger(warehouse)
    try:
        ledger.setup()
        ledger.register("products", "products__v1", "fp")
        ledger.mark_written(
            "products__v1", "products", "fp", [chunk(1, "2026-03-01T10:00:00+00:00")]
        )
        ledger.mark_pending(
            "products__v1", "products", "fp", [chunk(2, "2026-03-02T10:00:00+00:00")]
        )
        ledger.mark_pending(
            "products__v1", "products", "fp", [chunk(3, "2026-03-03T10:00:00+00:00")]
        )
        run = ledger.start_run("products", "products__v1", "local", "m", "fp", dry_run=False)
        ledger.finish_run(run, "failed", {"error": "boom"})
        with warehouse.connect(autocommit=True) as conn:
            (row,) = freshness(conn)
    finally:
        ledger.close()
    assert (row.logical, row.physical) == ("products", "products__v1")  # building, not serving
    assert (row.pending_chunks, row.written_chunks) == (2, 1)
    assert row.oldest_pending_updated_at == 1772445600.0  # 2026-03-02T10:00Z
    assert row.newest_written_updated_at == 1772359200.0  # 2026-03-01T10:00Z
    assert row.last_success_at is None and row.last_run_at is not None
    assert row.last_run_failed
