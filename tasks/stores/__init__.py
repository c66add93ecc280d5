"""Vector stores: one module per provider behind :class:`~tasks.stores.base.VectorStore`."""

from __future__ import annotations

from tasks.settings import Settings, get_settings
from tasks.stores.base import SearchHit, VectorRecord, VectorStore
from tasks.warehouse import get_warehouse


def get_store(settings: Settings | None = None) -> VectorStore:
    """The configured vector store (``VECTOR_STORE``: ``pgvector`` or ``pinecone``)."""
    settings = settings or get_settings()
    if settings.vector_store == "pinecone":
        from tasks.stores.pinecone import PineconeStore, PineconeStoreConfig

        return PineconeStore(PineconeStoreConfig.from_settings(settings))
    from tasks.stores.pgvector import PgVectorStore

    return PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)


__all__ = ["SearchHit", "VectorRecord", "VectorStore", "get_store"]
