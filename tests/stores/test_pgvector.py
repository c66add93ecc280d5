"""The vector-store contract on pgvector (real embedded PostgreSQL, a fresh database per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.stores.pgvector import PgVectorStore
from tests.stores.contract import VectorStoreContract

pytestmark = pytest.mark.integration


@pytest.fixture
def store(env: pytest.MonkeyPatch) -> Iterator[PgVectorStore]:
    """An empty pgvector store in this test's database."""
    from tasks.settings import get_settings
    from tasks.warehouse import get_warehouse

    settings = get_settings()
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    yield store
    store.close()


class TestPgVectorContract(VectorStoreContract):
    """pgvector passes the shared contract."""
