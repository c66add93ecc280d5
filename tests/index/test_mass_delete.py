"""The mass-delete guard on the real pieces (embedded Postgres, ledger, pgvector, the OpenAI SDK
against the local server): a documents model that suddenly lost most of its rows stops the run
before anything is deleted, unless the deletion is confirmed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tasks.errors import MassDeleteRefused
from tasks.index.run import IndexResult, index_documents
from tasks.settings import Settings, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import (
    SPEC,
    Doc,
    fake_openai,
    ledger_rows,
    store_rows,
    write_docs,
)

DOCS = {f"item:{i:02d}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(20)}


@pytest.fixture
def indexed(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> Iterator[tuple[Settings, PgVectorStore, Any]]:
    """20 one-chunk documents, indexed once."""
    settings = get_settings()
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    embedder = fake_openai(openai_server.base_url)
    write_docs(get_warehouse(settings).conninfo, DOCS)
    first = index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings)
    assert first.vectors_in_store == 20
    yield settings, store, embedder
    store.close()


def run(settings: Settings, store: PgVectorStore, embedder: Any, **kw: Any) -> IndexResult:
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings, **kw)


def assert_untouched(settings: Settings) -> None:
    conninfo = get_warehouse(settings).conninfo
    assert set(store_rows(conninfo, "products")) == {f"{d}#0" for d in DOCS}
    assert {s for _, s in ledger_rows(conninfo, "products").values()} == {"written"}


@pytest.mark.parametrize(
    ("kept", "why"),
    [
        (0, "the documents model model.test.docs returned no rows"),
        (2, "the documents model model.test.docs now has 2 documents (2 chunks)"),
    ],
)
def test_a_shrunken_documents_model_stops_before_deleting(
    indexed: tuple[Settings, PgVectorStore, Any],
    openai_server: FakeOpenAIServer,
    kept: int,
    why: str,
) -> None:
    settings, store, embedder = indexed
    write_docs(get_warehouse(settings).conninfo, dict(list(DOCS.items())[:kept]))
    calls = len(openai_server.requests)
    with pytest.raises(MassDeleteRefused) as err:
        run(settings, store, embedder)
    message = str(err.value)
    assert f"would delete {20 - kept} of the 20 chunks it serves" in message
    assert why in message and "INDEX_ALLOW_MASS_DELETE=true" in message
    assert_untouched(settings)  # the serving index is as it was
    assert len(openai_server.requests) == calls

    plan = run(settings, store, embedder, dry_run=True)  # a dry run reports instead of stopping
    assert plan.deleted == 20 - kept


def test_a_rebuild_that_would_serve_far_less_stops_too(
    indexed: tuple[Settings, PgVectorStore, Any],
) -> None:
    settings, store, embedder = indexed
    write_docs(get_warehouse(settings).conninfo, {})
    rebuild = settings.model_copy(update={"chunk_tokens": 64})  # new fingerprint: blue/green
    with pytest.raises(MassDeleteRefused):
        run(rebuild, store, embedder)
    assert_untouched(settings)


def test_small_deletions_and_confirmed_mass_deletions_go_through(
    indexed: tuple[Settings, PgVectorStore, Any],
) -> None:
    settings, store, embedder = indexed
    conninfo = get_warehouse(settings).conninfo
    fewer = dict(list(DOCS.items())[:16])  # 20% removed: at the limit, not over it
    write_docs(conninfo, fewer)
    assert run(settings, store, embedder).deleted == 4

    write_docs(conninfo, {})
    confirmed = settings.model_copy(update={"index_allow_mass_delete": True})
    result = run(confirmed, store, embedder)
    assert result.deleted == 16 and result.vectors_in_store == 0
    assert store_rows(conninfo, "products") == {}


def test_a_small_namespace_may_shrink_but_not_empty(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    """Below INDEX_MASS_DELETE_MIN_CHUNKS deletions go through whatever their share, but an
    empty documents model is refused however small the namespace."""
    settings = get_settings()
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    embedder = fake_openai(openai_server.base_url)
    conninfo = get_warehouse(settings).conninfo
    five = dict(list(DOCS.items())[:5])
    try:
        write_docs(conninfo, five)
        run(settings, store, embedder)
        write_docs(conninfo, dict(list(five.items())[:2]))
        assert run(settings, store, embedder).deleted == 3  # 60%, but only 3 chunks
        write_docs(conninfo, {})
        with pytest.raises(MassDeleteRefused, match="returned no rows"):
            run(settings, store, embedder)
    finally:
        store.close()
    assert len(store_rows(conninfo, "products")) == 2
