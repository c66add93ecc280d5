"""Vector stores: one module per provider behind :class:`~tasks.stores.base.VectorStore`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tasks.settings import Settings, get_settings
from tasks.stores.base import SearchHit, VectorRecord, VectorStore
from tasks.warehouse import get_warehouse


def get_store(settings: Settings | None = None) -> VectorStore:
    """The configured vector store (``VECTOR_STORE``: ``pgvector`` or ``pinecone``)."""
    settings = settings or get_settings()
    if settings.vector_store == "pinecone":
        from tasks.stores.pinecone import PineconeStore, PineconeStoreConfig

        return PineconeStore(
            PineconeStoreConfig.from_settings(settings), text_lookup=_ledger_texts(settings)
        )
    from tasks.stores.pgvector import PgVectorStore

    return PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)


def _ledger_texts(settings: Settings) -> Callable[[str, Sequence[str]], dict[str, str]]:
    """Chunk texts from the indexing ledger in Postgres, for hits whose text is not in Pinecone."""

    def lookup(namespace: str, ids: Sequence[str]) -> dict[str, str]:
        from tasks.index.ledger import chunk_texts

        found = chunk_texts(get_warehouse(settings), namespace, ids, settings.index_state_schema)
        return {chunk_id: text for chunk_id, (text, _) in found.items()}

    return lookup


__all__ = ["SearchHit", "VectorRecord", "VectorStore", "get_store"]
