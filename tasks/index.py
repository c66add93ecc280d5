"""Keep each namespace of the vector store equal to its documents model.

For every model declared with ``meta.embedding``: read the documents, turn each into chunks,
embed only the chunks whose content hash is not already in the store, upsert them in batches,
and delete the store's chunks that no longer exist. A re-run with no changes embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tasks.documents import Document, EmbeddingSpec, fetch_documents
from tasks.embedders.base import Embedder
from tasks.stores.base import VectorRecord, VectorStore
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)

UPSERT_BATCH = 256


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that gets one vector."""

    id: str
    document_id: str
    position: int
    text: str
    metadata: dict[str, object]
    content_hash: str


@dataclass
class IndexResult:
    """What indexing one namespace did."""

    namespace: str
    model: str
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    vectors_in_store: int = 0


def document_chunks(doc: Document, fingerprint: str) -> list[Chunk]:
    """The chunks of one document (one chunk per document; the model truncates long texts)."""
    metadata: dict[str, object] = {
        **doc.metadata,
        "document_id": doc.id,
        "chunk_position": 0,
    }
    if doc.title:
        metadata["title"] = doc.title
    if doc.url:
        metadata["url"] = doc.url
    if doc.updated_at:
        metadata["updated_at"] = doc.updated_at
    digest = hashlib.sha256(
        json.dumps([fingerprint, doc.text, metadata], sort_keys=True, default=str).encode()
    ).hexdigest()
    return [Chunk(f"{doc.id}#0", doc.id, 0, doc.text, metadata, digest)]


def index_documents(
    spec: EmbeddingSpec,
    warehouse: Warehouse,
    embedder: Embedder,
    store: VectorStore,
    on_progress: Callable[[int, int], None] | None = None,
) -> IndexResult:
    """Bring ``spec.namespace`` in the store in line with the documents of ``spec``."""
    result = IndexResult(namespace=spec.namespace, model=spec.model)
    store.ensure_namespace(spec.namespace, embedder.dimension)
    existing = store.content_hashes(spec.namespace)

    desired: dict[str, Chunk] = {}
    for doc in fetch_documents(warehouse, spec):
        result.documents += 1
        if not doc.text:
            logger.warning("Document %s of %s has no text; not indexed", doc.id, spec.model)
            continue
        for chunk in document_chunks(doc, embedder.fingerprint):
            desired[chunk.id] = chunk
    result.chunks = len(desired)

    todo = [c for c in desired.values() if existing.get(c.id) != c.content_hash]
    result.unchanged = result.chunks - len(todo)
    for batch in _batches(todo, UPSERT_BATCH):
        vectors = embedder.embed([c.text for c in batch])
        store.upsert(
            spec.namespace,
            [
                VectorRecord(
                    id=c.id,
                    document_id=c.document_id,
                    values=v,
                    text=c.text,
                    content_hash=c.content_hash,
                    metadata=c.metadata,  # type: ignore[arg-type]
                )
                for c, v in zip(batch, vectors, strict=True)
            ],
        )
        result.embedded += len(batch)
        if on_progress:
            on_progress(result.embedded, len(todo))

    stale = sorted(set(existing) - set(desired))
    if stale:
        result.deleted = store.delete(spec.namespace, stale)
    result.vectors_in_store = store.count(spec.namespace)
    logger.info(
        "Namespace %s: %d documents, %d embedded, %d unchanged, %d deleted, %d in store",
        spec.namespace, result.documents, result.embedded, result.unchanged, result.deleted,
        result.vectors_in_store,
    )
    return result


def _batches(items: list[Chunk], size: int) -> Iterable[list[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
