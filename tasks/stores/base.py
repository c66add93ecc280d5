"""The vector-store interface shared by pgvector (embedded default) and Pinecone.

Records are chunks of documents. Every store keeps, per namespace, the chunk id, its document id,
a content hash (so unchanged chunks are not re-embedded), the vector and flat metadata. The
contract test suite in ``tests/stores/contract.py`` runs against every implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.settings import check_identifier

#: Metadata values a store accepts: flat scalars or lists of strings (Pinecone's rules).
MetadataValue = str | int | float | bool | list[str]


@dataclass(frozen=True)
class VectorRecord:
    """One chunk to write."""

    id: str
    document_id: str
    values: list[float]
    text: str
    content_hash: str
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """One result of a vector query, best first."""

    id: str
    document_id: str
    score: float
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredRecord:
    """What a store holds for one record, as the index doctor compares it with the ledger."""

    id: str
    content_hash: str
    #: The record's metadata as written (without a store's own keys, e.g. Pinecone's text).
    metadata: dict[str, Any]
    #: Length of the stored vector.
    dimension: int


class VectorStore(ABC):
    """A namespaced vector index with upsert-by-id, delete-by-id and filtered top-k queries."""

    name: str

    @abstractmethod
    def ensure_namespace(self, namespace: str, dimension: int) -> None:
        """Create the namespace for vectors of ``dimension`` if needed.

        Raises:
            VectorStoreError: it exists with another dimension.
        """

    @abstractmethod
    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace records by id; returns how many were written."""

    @abstractmethod
    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        """Delete records by id (missing ids are ignored); returns how many were asked."""

    @abstractmethod
    def query(
        self,
        namespace: str,
        vector: Sequence[float],
        top_k: int,
        filter: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``top_k`` most similar records (cosine; higher score is better)."""

    @abstractmethod
    def count(self, namespace: str) -> int:
        """Records in ``namespace`` (0 when it does not exist)."""

    @abstractmethod
    def content_hashes(self, namespace: str) -> dict[str, str]:
        """``{record id: content hash}`` of everything in ``namespace``."""

    @abstractmethod
    def scan(self, namespace: str, page_size: int = 500) -> Iterator[list[StoredRecord]]:
        """Every record of ``namespace`` (none when it does not exist), ``page_size`` at a time,
        without its vector values: what the index doctor compares with the ledger."""

    @abstractmethod
    def update_metadata(
        self, namespace: str, updates: Sequence[tuple[str, dict[str, MetadataValue]]]
    ) -> int:
        """Replace the metadata of existing records without touching their vectors."""

    @abstractmethod
    def drop_namespace(self, namespace: str) -> None:
        """Delete a whole namespace (only for blue/green rebuilds that switched away from it)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def check_namespace(namespace: str) -> str:
    """Namespaces become table names in pgvector: allow-list them."""
    return check_identifier(namespace, "namespace")
