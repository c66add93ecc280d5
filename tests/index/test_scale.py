"""Indexing whose cost follows the change, not the corpus, on the real pieces (embedded Postgres,
ledger, embedding cache, pgvector, the OpenAI SDK against the local server): unchanged documents
are skipped by their document hash before chunking, deleted ones are found in SQL, and the plan
is read in keyset pages, correct across page boundaries and when pages are planned again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import tasks.index.run as run_module
from tasks.index.chunking import Chunk
from tasks.index.documents import Document
from tasks.index.run import IndexResult, index_documents
from tasks.settings import Settings, get_settings
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
    write_docs,
)

LONG = "\n\n".join(
    f"Section {i}. The {word} stove burns hot and packs small for long trips on foot."
    for i, word in enumerate(["red", "blue", "green", "black", "white"])
)


def corpus() -> dict[str, Doc]:
    """Eleven documents, one of them several chunks long."""
    docs = {f"item:{i:02d}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(10)}
    docs["item:long"] = Doc("Camp stove", LONG, "outdoor", 99.5)
    return docs


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the documents the indexer chunks, in call order (the real chunker runs)."""
    calls: list[str] = []
    real = run_module.document_chunks

    def spy(doc: Document, *args: Any, **kwargs: Any) -> list[Chunk]:
        calls.append(doc.id)
        return real(doc, *args, **kwargs)

    monkeypatch.setattr(run_module, "document_chunks", spy)
    return calls


@pytest.fixture
def setup(env: pytest.MonkeyPatch) -> Iterator[tuple[Settings, PgVectorStore]]:
    settings = get_settings().model_copy(
        update={"chunk_tokens": 24, "chunk_overlap_tokens": 0, "index_batch_size": 3}
    )
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    yield settings, store
    store.close()


def index(settings: Settings, store: Any, embedder: Any, **update: Any) -> IndexResult:
    settings = settings.model_copy(update=update)
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings)


def assert_indexed(settings: Settings, docs: dict[str, Doc], embedder: Any, physical: str) -> None:
    """Store and ledger hold exactly the chunks of ``docs``, all written."""
    want = expected(docs, settings, embedder)
    conninfo = get_warehouse(settings).conninfo
    assert {i: r[0] for i, r in store_rows(conninfo, physical).items()} == want
    assert ledger_rows(conninfo, physical) == {i: (h, "written") for i, h in want.items()}


def recorded_documents(settings: Settings, physical: str) -> set[str]:
    """Document ids with a recorded document hash."""
    with psycopg.connect(get_warehouse(settings).conninfo) as conn:
        rows = conn.execute(
            "select document_id from index_state.documents where namespace = %s", (physical,)
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize("paging", [{}, {"index_page_documents": 2, "index_plan_held_chunks": 1}])
def test_a_rerun_chunks_only_what_changed(
    setup: tuple[Settings, PgVectorStore],
    openai_server: FakeOpenAIServer,
    chunked: list[str],
    paging: dict[str, int],
) -> None:
    settings, store = setup
    settings = settings.model_copy(update=paging)
    embedder = fake_openai(openai_server.base_url)
    docs = corpus()
    write_docs(get_warehouse(settings).conninfo, docs)

    first = index(settings, store, embedder)
    calls = list(chunked)  # before expected() below chunks them too
    want = expected(docs, settings, embedder)
    assert first.chunks == len(want) > len(docs) and first.documents == len(docs)
    assert_indexed(settings, docs, embedder, "products")
    assert recorded_documents(settings, "products") == set(docs)
    # Tiny pages, held up to one chunk: later pages are planned (and chunked) again to write.
    assert sorted(set(calls)) == sorted(docs)
    assert len(calls) == (len(docs) if not paging else len(docs) * 2 - 2)  # page 1 held

    chunked.clear()
    openai_server.reset()
    again = index(settings, store, embedder)
    assert chunked == [] and openai_server.requests == []  # no document chunked, none embedded
    assert (again.documents, again.chunks, again.unchanged) == (len(docs), len(want), len(want))
    assert again.embedded == again.deleted == again.upserted == 0

    # One text changed, one document deleted, one added, one only re-priced (metadata).
    docs["item:03"] = Doc("Item 3", "A wholly different text for three.")
    del docs["item:05"]
    docs["item:zz"] = Doc("Item zz", "Brand new at the end of the id order.")
    docs["item:07"] = Doc("Item 7", "A sturdy thing number 7.", price=77.0)
    write_docs(get_warehouse(settings).conninfo, docs)
    chunked.clear()
    openai_server.reset()
    changed = index(settings, store, embedder)

    assert sorted(set(chunked)) == ["item:03", "item:07", "item:zz"]
    assert sorted(openai_server.embedded_inputs) == sorted(
        [docs["item:03"].text, docs["item:zz"].text]
    )
    assert (changed.deleted, changed.metadata_updated, changed.embedded) == (1, 1, 2)
    assert_indexed(settings, docs, embedder, "products")
    assert recorded_documents(settings, "products") == set(docs)
    rows = store_rows(get_warehouse(settings).conninfo, "products")
    assert rows["item:07#0"][1]["price"] == 77.0


def test_a_configuration_change_replans_every_document(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer, chunked: list[str]
) -> None:
    settings, store = setup
    embedder = fake_openai(openai_server.base_url)
    docs = corpus()
    write_docs(get_warehouse(settings).conninfo, docs)
    index(settings, store, embedder)

    chunked.clear()
    rebuilt = index(settings, store, embedder, chunk_tokens=16)

    assert sorted(chunked) == sorted(docs) and rebuilt.rebuilt and rebuilt.switched
    narrower = settings.model_copy(update={"chunk_tokens": 16})
    assert_indexed(narrower, docs, embedder, rebuilt.physical_namespace)
    assert recorded_documents(settings, rebuilt.physical_namespace) == set(docs)


class FailingStore(PgVectorStore):
    """The real pgvector store, whose ``fail``-th upsert raises after writing (a store that
    wrote but whose acknowledgement was lost)."""

    fail = 0

    def upsert(self, namespace: str, records: Any) -> int:
        written = super().upsert(namespace, records)
        self.fail -= 1
        if self.fail == 0:
            raise ConnectionError("lost the acknowledgement")
        return written


def test_a_document_reverted_after_a_failed_write_is_planned_again(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer, chunked: list[str]
) -> None:
    """Its hash is forgotten before its chunks are written: a run that died mid-way never
    leaves a document skipped while its ledger rows are pending."""
    settings, _ = setup
    embedder = fake_openai(openai_server.base_url)
    store = FailingStore(get_warehouse(settings), schema=settings.vector_schema)
    docs = corpus()
    conninfo = get_warehouse(settings).conninfo
    write_docs(conninfo, docs)
    index(settings, store, embedder)

    original = docs["item:long"]
    docs["item:long"] = Doc("Camp stove", LONG.replace("stove", "kettle"), "outdoor", 99.5)
    write_docs(conninfo, docs)
    store.fail = 1
    with pytest.raises(ConnectionError):
        index(settings, store, embedder)
    assert "pending" in {state for _, state in ledger_rows(conninfo, "products").values()}
    assert "item:long" not in recorded_documents(settings, "products")

    docs["item:long"] = original  # back to the text the old hash was recorded for
    write_docs(conninfo, docs)
    chunked.clear()
    index(settings, store, embedder)
    assert chunked == ["item:long"]
    assert_indexed(settings, docs, embedder, "products")
    store.close()


def test_ledger_rows_deleted_by_hand_replan_their_documents(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer, chunked: list[str]
) -> None:
    """The documented way to force a rebuild still works: a recorded hash counts only while
    every chunk of its document is still written in the ledger."""
    settings, store = setup
    embedder = fake_openai(openai_server.base_url)
    docs = corpus()
    conninfo = get_warehouse(settings).conninfo
    write_docs(conninfo, docs)
    index(settings, store, embedder)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("delete from index_state.chunks where chunk_id = 'item:long#1'")

    chunked.clear()
    index(settings, store, embedder)
    assert chunked == ["item:long"]
    assert_indexed(settings, docs, embedder, "products")
