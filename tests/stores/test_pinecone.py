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
