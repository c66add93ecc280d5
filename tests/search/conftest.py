"""Fixtures for the search library: a small index of support notes with product codes.

Built in a fresh database with the real local embedder and the real pgvector store, declared in
a minimal dbt manifest of its own (namespace ``codes``), so it needs no pipeline run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.settings import Settings

PRODUCTS = [
    "trail running shoe",
    "camping stove",
    "rain jacket",
    "headlamp",
    "sleeping bag",
    "water filter",
    "trekking pole",
    "daypack",
    "tent footprint",
    "insulated bottle",
    "bike light",
    "dry bag",
]


def write_manifest(data_dir: Path, namespace: str, metadata_columns: list[str]) -> None:
    """A dbt manifest declaring one documents model for ``namespace`` (what load_specs reads)."""
    target = data_dir / "dbt" / "target"
    target.mkdir(parents=True, exist_ok=True)
    node = {
        "resource_type": "model",
        "schema": "analytics",
        "name": namespace,
        "config": {
            "meta": {
                "embedding": {
                    "id_column": "document_id",
                    "text_columns": ["body"],
                    "title_column": "title",
                    "updated_at_column": "updated_at",
                    "metadata_columns": metadata_columns,
                    "namespace": namespace,
                }
            }
        },
    }
    manifest = {"nodes": {f"model.test.{namespace}": node}}
    (target / "manifest.json").write_text(json.dumps(manifest))


def code_documents() -> list[dict[str, object]]:
    """36 support notes that differ almost only by their part code (e.g. ``ZX-2688-QR``)."""
    rng = random.Random(7)
    docs: list[dict[str, object]] = []
    for i in range(36):
        product = PRODUCTS[i % len(PRODUCTS)]
        code = f"ZX-{rng.randint(1000, 9999)}-{rng.choice(['QT', 'QR', 'TQ', 'RT'])}"
        docs.append(
            {
                "id": f"note:{i}",
                "code": code,
                "product": product,
                "text": f"Support note for the {product}. Firmware or part revision {code}. "
                "Check the seals and the fit before every trip.",
            }
        )
    return docs


@pytest.fixture(scope="session")
def code_index(
    pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, list[dict[str, object]]]]:
    """Settings of a database whose namespace ``codes`` holds :func:`code_documents`."""
    from tasks.embedders import get_embedder
    from tasks.stores import get_store
    from tasks.stores.base import VectorRecord
    from tests.conftest import create_database, reset_caches

    data_dir = tmp_path_factory.mktemp("codes-data")
    write_manifest(data_dir, "codes", ["category", "code"])
    settings = Settings(
        _env_file=None,
        database_url=create_database(pg_server),
        data_dir=data_dir,
        search_mode="vector",
    )
    docs = code_documents()
    embedder = get_embedder(settings)
    vectors = embedder.embed([str(d["text"]) for d in docs])
    store = get_store(settings)
    try:
        store.ensure_namespace("codes", embedder.dimension)
        store.upsert(
            "codes",
            [
                VectorRecord(
                    id=f"{d['id']}#0",
                    document_id=str(d["id"]),
                    values=v,
                    text=str(d["text"]),
                    content_hash=str(i),
                    metadata={
                        "category": "outdoor",
                        "code": str(d["code"]),
                        "title": f"{d['product']} ({d['code']})",
                        "chunk_position": 0,
                    },
                )
                for i, (d, v) in enumerate(zip(docs, vectors, strict=True))
            ],
        )
    finally:
        store.close()
    yield settings, docs
    reset_caches()
