"""The whole data_pipeline flow with ``VECTOR_STORE=pinecone``: real embedded Postgres, dlt, dbt,
Prefect and the local model; vectors go through the official SDK to the local Pinecone server.

Two full pipeline runs: the slowest test of the suite (about a minute), and part of every run.
Vector and hybrid search run against the result.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import reset_caches
from tests.fakes.pinecone_server import FakePinecone
from tests.stores.conftest import API_KEY

pytestmark = [pytest.mark.integration]


def test_pipeline_indexes_into_pinecone_and_reruns_write_nothing(
    env: pytest.MonkeyPatch, prefect_harness: None, fake_pinecone: FakePinecone
) -> None:
    from flows.main import data_pipeline
    from tasks.search.searcher import Searcher, search

    index_name = f"pipe-{uuid.uuid4().hex[:8]}"
    for key, value in {
        "VECTOR_STORE": "pinecone",
        "PINECONE_API_KEY": API_KEY,
        "PINECONE_CONTROLLER_HOST": fake_pinecone.url,
        "PINECONE_INDEX_NAME": index_name,
        "PINECONE_CREATE_INDEX": "true",
    }.items():
        env.setenv(key, value)
    reset_caches()

    summary = data_pipeline()
    [result] = summary.index
    assert summary.validation is not None and summary.validation.ok
    held = fake_pinecone.vectors(index_name, result.physical_namespace)
    assert result.chunks > 0
    assert len(held) == result.chunks == result.vectors_in_store  # no duplicates, no orphans
    assert all(m["document_id"] and m["content_hash"] for _, m in held.values())

    hits = search("a light tent for two people backpacking in the rain", top_k=3)
    assert len(hits) == 3
    assert all(h.document_id and h.snippet for h in hits)  # text came back with the hit

    # Hybrid with Pinecone: the keyword side reads the chunk text from the ledger in Postgres
    # and is fused with Pinecone's vector hits; an exact product name wins and is highlighted.
    with Searcher() as searcher:
        hybrid = searcher.search("Clearcall", top_k=3, mode="hybrid")
    assert hybrid.candidates["vector"] > 0 and hybrid.candidates["fulltext"] > 0
    assert hybrid.results[0].document_id == "item:2"
    assert "<mark>Clearcall</mark>" in hybrid.results[0].snippet

    # A re-run with nothing changed embeds nothing and writes nothing to Pinecone.
    fake_pinecone.reset_counters()
    again = data_pipeline()
    [rerun] = again.index
    assert rerun.embedded == 0 and rerun.deleted == 0
    assert fake_pinecone.counters["upsert"] == 0
    assert fake_pinecone.counters["delete"] == 0
    assert fake_pinecone.vectors(index_name, result.physical_namespace).keys() == held.keys()
