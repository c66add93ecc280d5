"""The per-namespace index lock: a second run waits for the first (bounded), then goes on; past
INDEX_LOCK_WAIT_S it fails naming who holds the lock. Real PostgreSQL sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tasks.index.ledger import IndexBusy, Ledger
from tasks.index.run import index_documents
from tasks.settings import get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, base_docs_for_cli, fake_openai, write_docs


def hold_lock(
    release: threading.Event, held: threading.Event, events: list[str] | None = None
) -> None:
    """Hold ``products``' lock in another session until ``release`` is set."""
    settings = get_settings()
    other = Ledger(get_warehouse(settings), settings.index_state_schema)
    other.setup()
    try:
        with other.lock(SPEC.namespace):
            held.set()
            release.wait(timeout=60)
            if events is not None:
                events.append("holder let go")
    finally:
        other.close()


@contextmanager
def lock_held_elsewhere(events: list[str] | None = None) -> Iterator[threading.Event]:
    """``products``' lock held by another session until the yielded event is set (at the
    latest when the block ends)."""
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_lock, args=(release, held, events))
    holder.start()
    try:
        assert held.wait(timeout=30)
        yield release
    finally:
        release.set()
        holder.join(timeout=30)


def test_second_run_waits_then_indexes(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    settings = get_settings().model_copy(update={"index_lock_wait_s": 60.0})
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, base_docs_for_cli())
    events: list[str] = []
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    try:
        with lock_held_elsewhere(events) as release:
            threading.Timer(1.0, release.set).start()
            result = index_documents(
                SPEC, warehouse, fake_openai(openai_server.base_url), store, settings=settings
            )
            events.append("indexed")
    finally:
        store.close()
    assert events == ["holder let go", "indexed"]  # it waited for the holder, then ran
    assert result.embedded == 3 and result.vectors_in_store == 3


def test_second_run_gives_up_naming_the_holder(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    settings = get_settings().model_copy(update={"index_lock_wait_s": 0.5})
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, base_docs_for_cli())
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    try:
        with lock_held_elsewhere(), pytest.raises(IndexBusy) as err:
            index_documents(
                SPEC, warehouse, fake_openai(openai_server.base_url), store, settings=settings
            )
    finally:
        store.close()

    message = str(err.value)
    assert "'products'" in message and "backend pid" in message
    assert "INDEX_LOCK_WAIT_S" in message
    assert openai_server.requests == []
