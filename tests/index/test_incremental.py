"""Incremental indexing on the real pieces: a documents table in the embedded Postgres, the
ledger, the embedding cache, the pgvector store and the real OpenAI SDK against the local fake
server. After every change the store must equal the expected chunk set exactly, and the inputs
the server received must be exactly the changed chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tasks.embedders import EmbeddingBudgetExceeded
from tasks.index.chunking import text_hash
from tasks.index.ledger import chunk_texts
from tasks.index.namespaces import serving_namespace
from tasks.index.run import IndexResult, chunker_config, document_chunks, index_documents
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
    tables,
    write_docs,
)

LONG = "\n\n".join(
    f"Section {i}. The {word} stove burns hot and packs small for long trips on foot. "
    f"It has been tested on {i + 3} mountain routes in rain and snow."
    for i, word in enumerate(["red", "blue", "green", "black"])
)


def base_docs() -> dict[str, Doc]:
    docs = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(6)}
    docs["item:long"] = Doc("Camp stove", LONG, "outdoor", 99.5)
    return docs


@pytest.fixture
def setup(env: pytest.MonkeyPatch) -> Iterator[tuple[Settings, PgVectorStore]]:
    settings = get_settings().model_copy(
        update={"chunk_tokens": 48, "chunk_overlap_tokens": 8, "index_batch_size": 4}
    )
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    yield settings, store
    store.close()


def run(settings: Settings, store: PgVectorStore, embedder: Any, **kw: Any) -> IndexResult:
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings, **kw)


def check_store(conninfo: str, physical: str, want: dict[str, str]) -> None:
    rows = store_rows(conninfo, physical)
    assert {i: r[0] for i, r in rows.items()} == want
    assert {i: (h, "written") for i, h in want.items()} == ledger_rows(conninfo, physical)


def test_incremental_changes_pay_only_for_what_changed(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    embedder = fake_openai(openai_server.base_url)
    docs = base_docs()
    write_docs(conninfo, docs)

    # 1. first build: everything embedded once, into the logical name itself
    want = expected(docs, settings, embedder)
    assert sum(1 for i in want if i.startswith("item:long#")) >= 3
    result = run(settings, store, embedder)
    assert result.physical_namespace == "products" and result.switched
    check_store(conninfo, "products", want)
    assert sorted(openai_server.embedded_inputs) == sorted(
        {t for t in _texts(docs, settings, embedder).values()}
    )
    assert result.embedded == len(want) and result.vectors_in_store == len(want)
    assert serving_namespace(settings, "products") == "products"
    with psycopg.connect(conninfo) as conn:  # the run pruned the (still fresh) embedding cache
        assert conn.execute("select removed from index_state.cache_prunes").fetchall() == [(0,)]

    # 2. no change: zero requests, zero writes
    openai_server.reset()
    before = store_rows(conninfo, "products")
    result = run(settings, store, embedder)
    assert openai_server.requests == []
    assert (result.embedded, result.upserted, result.deleted, result.metadata_updated) == (
        0,
        0,
        0,
        0,
    )
    assert result.unchanged == len(want) and store_rows(conninfo, "products") == before

    # 3. add documents: exactly their chunks are embedded
    openai_server.reset()
    docs["item:new1"] = Doc("New one", "Brand new kettle.")
    docs["item:new2"] = Doc("New two", "Brand new lantern.")
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert sorted(openai_server.embedded_inputs) == sorted(
        [docs["item:new1"].text, docs["item:new2"].text]
    )
    check_store(conninfo, "products", want := expected(docs, settings, embedder))

    # 4. change a text: only that chunk
    openai_server.reset()
    docs["item:1"] = Doc("Item 1", "Now made of cast iron.")
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert openai_server.embedded_inputs == [docs["item:1"].text]
    check_store(conninfo, "products", want := expected(docs, settings, embedder))

    # 5. metadata only: no embedding, metadata updated in place, vector untouched
    openai_server.reset()
    before = store_rows(conninfo, "products")
    docs["item:2"] = Doc("Item 2", "A sturdy thing number 2.", "garden", 12.0)
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert openai_server.requests == [] and result.metadata_updated == 1 and result.upserted == 0
    after = store_rows(conninfo, "products")
    assert after["item:2#0"][1]["category"] == "garden" and after["item:2#0"][1]["price"] == 12.0
    assert after["item:2#0"][2] == before["item:2#0"][2]  # same vector
    check_store(conninfo, "products", want)

    # 6. delete a document: its chunks leave the store, nothing embedded
    openai_server.reset()
    del docs["item:3"]
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert openai_server.requests == [] and result.deleted == 1
    check_store(conninfo, "products", want := expected(docs, settings, embedder))

    # 7. shrink the long document to its first section: stale chunks deleted
    openai_server.reset()
    old_long = {i for i in want if i.startswith("item:long#")}
    docs["item:long"] = Doc("Camp stove", LONG.split("\n\n")[0], "outdoor", 99.5)
    write_docs(conninfo, docs)
    new_want = expected(docs, settings, embedder)
    changed = {h for i, h in new_want.items() if want.get(i) != h}
    result = run(settings, store, embedder)
    assert {text_hash(t) for t in openai_server.embedded_inputs} == changed
    assert len(openai_server.embedded_inputs) == len(changed) <= 1
    assert result.deleted == len(old_long) - 1
    check_store(conninfo, "products", want := new_want)

    # 8. new model (other dimensions): rebuilt next to the serving one, switched, old dropped
    openai_server.reset()
    embedder16 = fake_openai(openai_server.base_url, dimensions=16)
    result = run(settings, store, embedder16)
    assert result.rebuilt and result.switched and result.physical_namespace != "products"
    assert serving_namespace(settings, "products") == result.physical_namespace
    assert sorted(openai_server.embedded_inputs) == sorted(
        _texts(docs, settings, embedder16).values()
    )
    check_store(conninfo, result.physical_namespace, expected(docs, settings, embedder16))
    assert "products" not in tables(conninfo)  # the old physical namespace was dropped
    assert ledger_rows(conninfo, "products") == {}

    # 9. new chunk size with the same model: identical texts come from the cache
    openai_server.reset()
    bigger = settings.model_copy(update={"chunk_tokens": 200})
    want_big = expected(docs, bigger, embedder16)
    cached_before = set(_texts(docs, settings, embedder16).values())
    result = run(bigger, store, embedder16)
    assert (
        set(openai_server.embedded_inputs)
        == set(_texts(docs, bigger, embedder16).values()) - cached_before
    )
    assert result.cache_hits == len(want_big) - len(openai_server.embedded_inputs) > 0
    check_store(conninfo, result.physical_namespace, want_big)
    assert serving_namespace(bigger, "products") == result.physical_namespace


def _texts(docs: dict[str, Doc], settings: Settings, embedder: Any) -> dict[str, str]:
    from tasks.index.documents import Document

    config = chunker_config(settings, embedder)
    out = {}
    for doc_id, d in docs.items():
        doc = Document(doc_id, d.text, d.title, None, None, {})
        out.update({c.id: c.text for c in document_chunks(doc, config, embedder.count_tokens)})
    return out


def test_usage_cost_and_run_record(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    write_docs(conninfo, base_docs())
    embedder = fake_openai(openai_server.base_url)
    result = run(settings, store, embedder)
    tokens = sum(_usage(r) for r in openai_server.answered)
    assert result.input_tokens == tokens > 0 and result.requests == len(openai_server.answered)
    assert result.estimated_cost_usd == pytest.approx(tokens * 0.02 / 1e6)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "select status, input_tokens, requests, embedded, estimated_cost_usd "
            "from index_state.runs where run_id = %s",
            (result.run_id,),
        ).fetchone()
    assert row is not None
    assert row[:4] == ("completed", tokens, result.requests, result.embedded)
    assert float(row[4]) == pytest.approx(result.estimated_cost_usd, abs=1e-6)
    # the search side reads chunk text and metadata back from Postgres
    texts = chunk_texts(get_warehouse(settings), "products", ["item:0#0", "missing#0"])
    assert list(texts) == ["item:0#0"]
    assert texts["item:0#0"][0] == "Item 0\n\nA sturdy thing number 0."
    assert texts["item:0#0"][1]["category"] == "kitchen"


def _usage(request: Any) -> int:
    from tests.fakes.openai_server import count_tokens

    return sum(count_tokens(t) for t in request.inputs)


def test_budget_guard_stops_before_spending(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    write_docs(conninfo, base_docs())
    with pytest.raises(EmbeddingBudgetExceeded) as err:
        run(
            settings.model_copy(update={"max_tokens_per_run": 50}),
            store,
            fake_openai(openai_server.base_url),
        )
    assert "MAX_TOKENS_PER_RUN=50" in str(err.value)
    assert openai_server.requests == [] and store_rows(conninfo, "products") == {}


def test_dry_run_reports_and_writes_nothing(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    docs = base_docs()
    write_docs(conninfo, docs)
    embedder = fake_openai(openai_server.base_url)
    want = expected(docs, settings, embedder)
    result = run(settings, store, embedder, dry_run=True)
    assert result.dry_run and result.embedded == len(want) and result.tokens_to_embed > 0
    assert result.estimated_cost_usd == pytest.approx(result.tokens_to_embed * 0.02 / 1e6)
    assert "would embed" in result.to_text()
    assert openai_server.requests == [] and tables(conninfo) == set()
    assert ledger_rows(conninfo, "products") == {}


def test_interrupted_rebuild_keeps_serving_the_old_namespace(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    docs = base_docs()
    write_docs(conninfo, docs)
    old = fake_openai(openai_server.base_url)
    run(settings, store, old)
    old_rows = store_rows(conninfo, "products")

    # The new model's build fails half way (quota), after some batches were acknowledged.
    from tests.fakes.openai_server import Fault

    new = fake_openai(openai_server.base_url, dimensions=16, max_request_inputs=4)
    openai_server.reset()
    openai_server.script(Fault(), Fault(quota=True))  # first request fine, then no quota
    with pytest.raises(Exception, match="insufficient_quota"):
        run(settings, store, new)
    assert serving_namespace(settings, "products") == "products"
    assert store_rows(conninfo, "products") == old_rows  # search still sees the complete old one
    sent_before = list(openai_server.embedded_inputs)
    assert len(sent_before) == 4

    # Re-run: resumes the build, never re-embeds what was embedded, then switches over.
    openai_server.reset()
    result = run(settings, store, new)
    assert not set(openai_server.embedded_inputs) & set(sent_before)
    assert len(openai_server.embedded_inputs) == len(expected(docs, settings, new)) - 4
    assert result.switched and serving_namespace(settings, "products") == result.physical_namespace
    check_store(conninfo, result.physical_namespace, expected(docs, settings, new))
    assert "products" not in tables(conninfo)


def test_store_records_unknown_to_the_ledger_are_reconciled(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    docs = base_docs()
    write_docs(conninfo, docs)
    embedder = fake_openai(openai_server.base_url)
    run(settings, store, embedder)
    # Lose the ledger, and leave an orphan in the store.
    from tasks.stores.base import VectorRecord

    store.upsert("products", [VectorRecord("ghost#0", "ghost", [1.0] + [0.0] * 7, "boo", "h")])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("delete from index_state.chunks")
    openai_server.reset()
    run(settings, store, embedder)
    assert openai_server.requests == []  # everything came back from the embedding cache
    check_store(conninfo, "products", expected(docs, settings, embedder))
