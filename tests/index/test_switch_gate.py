"""The evaluation gate of a blue/green switch (INDEX_SWITCH_GATES), on the real pieces: a
rebuilt namespace that scores below INDEX_SWITCH_MIN_NDCG on its labeled query file is not
switched in (the serving one stays, the error says both scores), and once the gate passes the
kept candidate is switched without embedding anything again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tasks.search.searcher as searcher_module
from tasks.errors import SwitchGateFailed
from tasks.index.documents import Document
from tasks.index.run import IndexResult, chunker_config, document_chunks, index_documents
from tasks.settings import Settings, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, Doc, fake_openai, write_docs

DOCS = {f"item:{i:02d}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(10)}


@pytest.fixture
def setup(env: pytest.MonkeyPatch) -> Iterator[tuple[Settings, PgVectorStore]]:
    # The documents table here is written by the test, not built by dbt: search learns the
    # namespace's model from this spec instead of a dbt manifest.
    env.setattr(searcher_module, "namespace_specs", lambda settings: [SPEC])
    settings = get_settings().model_copy(
        update={"chunk_tokens": 24, "chunk_overlap_tokens": 0, "search_mode": "vector"}
    )
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    yield settings, store
    store.close()


def index(settings: Settings, store: Any, embedder: Any, **update: Any) -> IndexResult:
    settings = settings.model_copy(update=update)
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings)


def serving(settings: Settings) -> str:
    with psycopg.connect(get_warehouse(settings).conninfo) as conn:
        row = conn.execute(
            "select physical from index_state.namespaces "
            "where logical = 'products' and state = 'serving'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def chunk_text(doc_id: str, settings: Settings, embedder: Any) -> str:
    """The text of ``doc_id``'s only chunk: the local server gives equal texts equal vectors, so
    this query finds that document first."""
    doc = DOCS[doc_id]
    document = Document(doc_id, doc.text, doc.title, None, None)
    (chunk,) = document_chunks(document, chunker_config(settings, embedder), embedder.count_tokens)
    return chunk.text


def gate_file(path: Path, queries: list[tuple[str, str]]) -> Path:
    path.write_text(
        "".join(json.dumps({"query": q, "relevant_ids": [r]}) + "\n" for q, r in queries),
        encoding="utf-8",
    )
    return path


def test_a_rebuild_below_the_gate_is_not_switched_in_then_is_once_it_passes(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    settings, store = setup
    embedder = fake_openai(openai_server.base_url)
    write_docs(get_warehouse(settings).conninfo, DOCS)
    first = index(settings, store, embedder)
    old = serving(settings)
    assert first.physical_namespace == old

    # Labels that the rebuilt namespace cannot satisfy: each query's best hit is another item.
    queries = [chunk_text(f"item:{i:02d}", settings, embedder) for i in range(3)]
    wrong = gate_file(
        tmp_path / "wrong.jsonl", [(q, f"item:{i + 5:02d}") for i, q in enumerate(queries)]
    )
    gates = {"index_switch_gates": {"products": wrong}, "index_switch_min_ndcg": 0.8}
    with pytest.raises(SwitchGateFailed) as refused:
        index(settings, store, embedder, chunk_tokens=20, **gates)
    message = str(refused.value)
    assert "below INDEX_SWITCH_MIN_NDCG=0.8" in message
    assert f"{old} keeps serving products" in message
    assert f"the serving {old}" in message  # both scores are given
    assert serving(settings) == old

    right = gate_file(
        tmp_path / "right.jsonl", [(q, f"item:{i:02d}") for i, q in enumerate(queries)]
    )
    calls = len(openai_server.requests)
    passed = index(
        settings, store, embedder, chunk_tokens=20, index_switch_gates={"products": right}
    )
    assert passed.switched and passed.physical_namespace != old
    assert serving(settings) == passed.physical_namespace
    assert passed.embedded == 0  # the kept candidate is switched in, nothing embedded again
    # Only the gate's own query embeddings went to the provider.
    assert len(openai_server.requests) - calls <= len(queries) * 2


def test_first_builds_and_namespaces_without_a_gate_switch_as_before(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    settings, store = setup
    embedder = fake_openai(openai_server.base_url)
    write_docs(get_warehouse(settings).conninfo, DOCS)
    # A first build is not gated (nothing serves yet to keep), even by a gate it would fail.
    hopeless = gate_file(tmp_path / "hopeless.jsonl", [("anything", "item:99")])
    first = index(settings, store, embedder, index_switch_gates={"products": hopeless})
    assert first.switched and serving(settings) == first.physical_namespace
    other = gate_file(tmp_path / "other.jsonl", [("anything", "item:01")])
    rebuilt = index(
        settings, store, embedder, chunk_tokens=20, index_switch_gates={"reviews": other}
    )
    assert rebuilt.switched and serving(settings) == rebuilt.physical_namespace
