"""The vector-store contract on Pinecone (real SDK over HTTP to the local test server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tasks.stores.pinecone import PineconeStore
from tests.stores.contract import VectorStoreContract


@pytest.fixture
def store(make_pinecone_store: Callable[..., PineconeStore]) -> PineconeStore:
    """An empty Pinecone store on its own index."""
    return make_pinecone_store()


class TestPineconeContract(VectorStoreContract):
    """Pinecone passes the shared contract."""


def test_no_request_was_rejected(store: PineconeStore, fake_pinecone: Any) -> None:
    """Running a contract scenario sends nothing the server refuses (4xx besides 404)."""
    contract = TestPineconeContract()
    contract.test_upsert_is_idempotent(store)
    contract.test_update_metadata_replaces_metadata_only(store)
    rejected = {k: n for k, n in fake_pinecone.counters.items() if k.endswith((":400", ":413"))}
    assert rejected == {}


def test_get_store_builds_pinecone_from_settings(
    fake_pinecone: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from pydantic import SecretStr

    from tasks.settings import Settings
    from tasks.stores import get_store

    monkeypatch.chdir(tmp_path)  # no stray .env
    with pytest.raises(ValueError, match="PINECONE_API_KEY"):
        Settings(vector_store="pinecone")
    settings = Settings(
        vector_store="pinecone",
        pinecone_api_key=SecretStr("pcsk-test-key"),
        pinecone_controller_host=fake_pinecone.url,
        pinecone_index_name="from-settings",
        pinecone_create_index=True,
        pinecone_metric="dotproduct",
        pinecone_upsert_parallelism=3,
    )
    store = get_store(settings)
    try:
        assert isinstance(store, PineconeStore)
        assert (store.config.index_name, store.config.metric, store.config.parallelism) == (
            "from-settings",
            "dotproduct",
            3,
        )
        store.ensure_namespace("docs", 4)
        assert fake_pinecone.indexes["from-settings"].metric == "dotproduct"
    finally:
        store.close()
        fake_pinecone.delete_index("from-settings")
