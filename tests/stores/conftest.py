"""Fixtures for the vector-store tests: the local Pinecone server and store factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.pinecone_server import FakePinecone

API_KEY = "pcsk-test-key"


@pytest.fixture(scope="session")
def pinecone_server() -> Iterator[FakePinecone]:
    """One local Pinecone server for the session (each test uses its own index)."""
    with FakePinecone(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def fake_pinecone(pinecone_server: FakePinecone) -> Iterator[FakePinecone]:
    """The session server with counters reset and faults off, before and after the test."""
    pinecone_server.reset_counters()
    pinecone_server.set_faults()
    pinecone_server.stats_lag_reads = 0
    pinecone_server.rate_limit_per_s = None
    yield pinecone_server
    pinecone_server.set_faults()
    pinecone_server.stats_lag_reads = 0
    pinecone_server.rate_limit_per_s = None


@pytest.fixture
def make_pinecone_store(fake_pinecone: FakePinecone) -> Iterator[Callable[..., Any]]:
    """Factory of Pinecone stores on a fresh index of the local server (closed after the test)."""
    from tasks.stores.pinecone import PineconeStore, PineconeStoreConfig

    stores: list[PineconeStore] = []

    def make(**overrides: Any) -> PineconeStore:
        values: dict[str, Any] = {
            "api_key": API_KEY,
            "index_name": f"t-{uuid.uuid4().hex[:10]}",
            "controller_host": fake_pinecone.url,
            "create_index": True,
            "retry_backoff_s": 0.01,
            "max_backoff_s": 0.05,
            "freshness_timeout_s": 5.0,
        }
        values.update(overrides)
        store = PineconeStore(PineconeStoreConfig(**values))
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
        if store.config.index_name in fake_pinecone.indexes:
            fake_pinecone.delete_index(store.config.index_name)
