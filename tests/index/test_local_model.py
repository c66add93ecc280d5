"""Incremental indexing with the real local model (all-MiniLM-L6-v2) and its own tokenizer:
add, change text, change only metadata, delete, shrink, then change the model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tasks.embedders.local import LocalEmbedder
from tasks.index.namespaces import serving_namespace
from tasks.index.run import index_documents
from tasks.settings import LocalEmbedderConfig, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import (
    SPEC,
    Doc,
    expected,
    fake_openai,
    ledger_rows,
    store_rows,
    tables,
    write_docs,
)
from tests.index.test_incremental import LONG


class SpyEmbedder(LocalEmbedder):
    """The real local model, recording every text it embeds."""

    def __init__(self) -> None:
        super().__init__(LocalEmbedderConfig(batch_size=8))
        self.seen: list[str] = []

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.seen.extend(texts)
        return super()._embed_batch(texts)


def test_local_model_incremental(env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer) -> None:
    settings = get_settings().model_copy(update={"chunk_tokens": 40, "index_batch_size": 3})
    warehouse = get_warehouse(settings)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    embedder = SpyEmbedder()

    def run(e: object = embedder) -> object:
        return index_documents(SPEC, warehouse, e, store, settings=settings)  # type: ignore[arg-type]

    def check(physical: str, e: object = embedder) -> None:
        want = expected(docs, settings, e)
        assert {i: r[0] for i, r in store_rows(warehouse.conninfo, physical).items()} == want
        assert ledger_rows(warehouse.conninfo, physical) == {
            i: (h, "written") for i, h in want.items()
        }

    docs = {
        "item:tent": Doc("Tent", "An ultralight two person tent for backpacking in the rain."),
        "item:pan": Doc("Pan", "A cast iron frying pan that heats evenly.", "kitchen"),
        "item:stove": Doc("Camp stove", LONG, "outdoor"),
    }
    write_docs(warehouse.conninfo, docs)
    try:
        run()
        want = expected(docs, settings, embedder)
        assert len(embedder.seen) == len(want) and len(want) >= 5  # the long one is chunked
        check("products")
        assert max(embedder.count_tokens(embedder.seen)) <= 40

        embedder.seen.clear()
        run()
        assert embedder.seen == []  # no change, no model call

        # add + change text + metadata only + delete in one run
        docs["item:lamp"] = Doc("Lamp", "A desk lamp with a warm light.")
        docs["item:pan"] = Doc("Pan", "A carbon steel wok for stir fries.", "kitchen")
        docs["item:tent"] = Doc(docs["item:tent"].title, docs["item:tent"].body, "camping", 250.0)
        write_docs(warehouse.conninfo, docs)
        embedder.seen.clear()
        result = run()
        assert sorted(embedder.seen) == sorted([docs["item:lamp"].text, docs["item:pan"].text])
        assert result.metadata_updated == 1  # type: ignore[attr-defined]
        check("products")
        assert store_rows(warehouse.conninfo, "products")["item:tent#0"][1]["category"] == "camping"

        # shrink the long document, delete another
        docs["item:stove"] = Doc("Camp stove", LONG.split("\n\n")[0], "outdoor")
        del docs["item:lamp"]
        write_docs(warehouse.conninfo, docs)
        embedder.seen.clear()
        result = run()
        assert len(embedder.seen) <= 1 and result.deleted >= 2  # type: ignore[attr-defined]
        check("products")

        # the serving namespace answers queries embedded with the same local model
        query = embedder.embed_query("backpacking shelter for rain")
        hits = store.query(serving_namespace(settings, "products"), query, 1)
        assert hits[0].document_id == "item:tent"

        # change the model: rebuilt elsewhere, switched, old dropped
        other = fake_openai(openai_server.base_url)
        result = run(other)
        physical = result.physical_namespace  # type: ignore[attr-defined]
        assert serving_namespace(settings, "products") == physical != "products"
        check(physical, other)
        assert "products" not in tables(warehouse.conninfo)
    finally:
        store.close()
