"""Incremental indexing and crash recovery with the Pinecone store: the real indexer, ledger and
embedding cache in the embedded Postgres, the real OpenAI SDK against its local fake and the
real Pinecone SDK against the local Pinecone server. After every step Pinecone must hold exactly
the expected chunks (no duplicates, no orphans) and the ledger must agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks.index.run import IndexResult, index_documents
from tasks.settings import Settings, get_settings
from tasks.stores.pinecone import PineconeStore, PineconeUnavailable
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer, serve
from tests.fakes.pinecone_server import FakePinecone
from tests.index.helpers import (
    SPEC,
    Doc,
    crash_docs,
    expected,
    fake_openai,
    ledger_rows,
    write_docs,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    """The local OpenAI-compatible server."""
    server = serve()
    yield server
    server.stop()


@pytest.fixture
def settings(env: pytest.MonkeyPatch) -> Settings:
    """Small chunks and batches so a few documents make many requests."""
    return get_settings().model_copy(
        update={"chunk_tokens": 24, "chunk_overlap_tokens": 0, "index_batch_size": 4}
    )


def held(server: FakePinecone, store: PineconeStore, physical: str) -> dict[str, str]:
    """What Pinecone holds: ``{id: content hash}``."""
    vectors = server.vectors(store.config.index_name, physical)
    return {i: str(m["content_hash"]) for i, (_, m) in vectors.items()}


def run(settings: Settings, store: PineconeStore, embedder: Any) -> IndexResult:
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings)


def check(
    settings: Settings, server: FakePinecone, store: PineconeStore, want: dict[str, str]
) -> None:
    assert held(server, store, "products") == want
    conninfo = get_warehouse(settings).conninfo
    assert ledger_rows(conninfo, "products") == {i: (h, "written") for i, h in want.items()}


def test_incremental_indexing_writes_only_changes(
    settings: Settings,
    openai_server: FakeOpenAIServer,
    fake_pinecone: FakePinecone,
    make_pinecone_store: Callable[..., PineconeStore],
) -> None:
    store = make_pinecone_store()
    embedder = fake_openai(openai_server.base_url)
    conninfo = get_warehouse(settings).conninfo
    docs = crash_docs(count=6)
    write_docs(conninfo, docs)

    # 1. first build
    result = run(settings, store, embedder)
    want = expected(docs, settings, embedder)
    assert len(want) == 18
    check(settings, fake_pinecone, store, want)
    assert result.vectors_in_store == 18

    # 2. nothing changed: nothing written to Pinecone
    fake_pinecone.reset_counters()
    result = run(settings, store, embedder)
    assert result.embedded == 0
    assert sum(fake_pinecone.counters[op] for op in ("upsert", "delete", "update")) == 0

    # 3. one paragraph changed: exactly one vector written
    fake_pinecone.reset_counters()
    docs["doc:2"] = Doc("Doc 2", docs["doc:2"].body.replace("Paragraph 1", "Section 1"), "outdoor")
    write_docs(conninfo, docs)
    run(settings, store, embedder)
    assert sum(n for _, n in fake_pinecone.upserts) == 1
    check(settings, fake_pinecone, store, want := expected(docs, settings, embedder))

    # 4. metadata only: updated in place (no upsert), vectors unchanged
    fake_pinecone.reset_counters()
    before = fake_pinecone.vectors(store.config.index_name, "products")
    docs["doc:4"] = Doc("Doc 4", docs["doc:4"].body, "garden", 4.0)
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert result.metadata_updated == 3 and fake_pinecone.counters["upsert"] == 0
    assert fake_pinecone.counters["update:200"] == 3  # Pinecone's update endpoint, by id
    after = fake_pinecone.vectors(store.config.index_name, "products")
    assert {after[f"doc:4#{k}"][1]["category"] for k in range(3)} == {"garden"}
    assert all(after[f"doc:4#{k}"][0] == before[f"doc:4#{k}"][0] for k in range(3))
    check(settings, fake_pinecone, store, want)

    # 5. a document deleted: its chunks leave Pinecone
    del docs["doc:0"]
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    assert result.deleted == 3
    check(settings, fake_pinecone, store, want := expected(docs, settings, embedder))
    assert store.count("products") == len(want) == 15


def test_outage_mid_upsert_then_rerun_ends_exact(
    settings: Settings,
    openai_server: FakeOpenAIServer,
    fake_pinecone: FakePinecone,
    make_pinecone_store: Callable[..., PineconeStore],
) -> None:
    store = make_pinecone_store(max_rounds=2)
    embedder = fake_openai(openai_server.base_url)
    conninfo = get_warehouse(settings).conninfo
    docs = crash_docs(count=20)
    write_docs(conninfo, docs)
    want = expected(docs, settings, embedder)

    # Pinecone goes down after 5 upsert requests: the run fails, part of the data is written.
    with (
        fake_pinecone.faulty(
            rate_5xx=1.0, status_5xx=503, only_ops=frozenset({"upsert"}), pass_first=5
        ),
        pytest.raises(PineconeUnavailable),
    ):
        run(settings, store, embedder)
    partial = held(fake_pinecone, store, "products")
    assert 0 < len(partial) < len(want)
    assert all(want[i] == h for i, h in partial.items())

    # The documents change while Pinecone is down; the re-run must converge on the new set.
    docs = crash_docs(version=1, count=18)
    write_docs(conninfo, docs)
    fake_pinecone.reset_counters()
    result = run(settings, store, embedder)
    want = expected(docs, settings, embedder)
    check(settings, fake_pinecone, store, want)  # no duplicates, no orphans
    assert result.vectors_in_store == len(want) == 54
