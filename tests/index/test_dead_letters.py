"""Dead letters: inputs the embedding provider rejects (a 400 for one input of a batch) do not
stop the others. Driven end to end on the real pieces: the documents table in the embedded
Postgres, the ledger, the pgvector store and the real OpenAI SDK against the local server,
scripted to reject every input that contains a marker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flows.cli import build_parser
from tasks.embedders.base import InputRejected
from tasks.errors import EmbeddingError
from tasks.index.run import IndexResult, index_documents, replay_dead_letters
from tasks.settings import Settings, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.index.helpers import (
    SPEC,
    Doc,
    expected,
    fake_openai,
    ledger_rows,
    store_rows,
    write_docs,
)

POISON = "POISON"


@pytest.fixture
def setup(env: pytest.MonkeyPatch) -> Iterator[tuple[Settings, PgVectorStore]]:
    settings = get_settings().model_copy(
        update={"chunk_tokens": 48, "chunk_overlap_tokens": 8, "index_batch_size": 4}
    )
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    yield settings, store
    store.close()


def run(settings: Settings, store: PgVectorStore, embedder: Any) -> IndexResult:
    return index_documents(SPEC, get_warehouse(settings), embedder, store, settings=settings)


def dead_letter_rows(conninfo: str) -> dict[str, tuple[Any, ...]]:
    """``{chunk id: (document id, content hash, error class, message, run id, first, last)}``."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "select chunk_id, document_id, content_hash, error_class, message, run_id, "
            "first_seen, last_seen from index_state.dead_letters"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def docs_with_poison() -> dict[str, Doc]:
    docs = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(8)}
    docs["item:3"] = Doc("Item 3", f"A {POISON} thing the provider refuses.")
    docs["item:6"] = Doc("Item 6", f"Another {POISON} thing.")
    return docs


def test_embed_partial_isolates_the_poison_inputs(openai_server: FakeOpenAIServer) -> None:
    embedder = fake_openai(openai_server.base_url)
    texts = [f"text {i}" + (f" {POISON}" if i in (2, 5) else "") for i in range(8)]
    openai_server.reject_containing = {POISON}

    vectors, rejects = embedder.embed_partial(texts)
    assert sorted(vectors) == [0, 1, 3, 4, 6, 7]
    assert sorted(rejects) == [2, 5]
    assert rejects[2].error_class == "http_400" and "HTTP 400" in rejects[2].message
    # Bisection: every input that got a vector was answered exactly once, by the server.
    assert sorted(openai_server.embedded_inputs) == sorted(texts[i] for i in vectors)
    assert embedder.embed([texts[0]]) == [vectors[0]]
    with pytest.raises(InputRejected):  # embed keeps failing the whole call
        embedder.embed(texts)


@pytest.mark.parametrize("fault", [Fault(status=401), Fault(status=404), Fault(quota=True)])
def test_whole_request_errors_still_fail(openai_server: FakeOpenAIServer, fault: Fault) -> None:
    openai_server.script(fault)
    with pytest.raises(EmbeddingError) as err:
        fake_openai(openai_server.base_url).embed_partial(["a", "b"])
    assert not isinstance(err.value, InputRejected)
    assert len(openai_server.requests) == 1  # not bisected


def test_poison_chunks_become_dead_letters_and_replay_recovers_them(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    embedder = fake_openai(openai_server.base_url)
    docs = docs_with_poison()
    write_docs(conninfo, docs)
    want = expected(docs, settings, embedder)
    poisoned = {i: h for i, h in want.items() if i.split("#")[0] in ("item:3", "item:6")}
    healthy = {i: h for i, h in want.items() if i not in poisoned}
    assert poisoned and healthy
    openai_server.reject_containing = {POISON}

    # 1. the other inputs are embedded and indexed; the rejected ones are dead letters
    result = run(settings, store, embedder)
    assert result.dead_letters == len(poisoned) and result.chunks == len(want)
    assert result.vectors_in_store == len(healthy) and result.switched
    assert result.embedded == len(healthy)
    assert f"{len(poisoned)} chunks rejected" in result.to_text()
    assert {i: r[0] for i, r in store_rows(conninfo, "products").items()} == healthy
    assert ledger_rows(conninfo, "products") == {i: (h, "written") for i, h in healthy.items()}
    rows = dead_letter_rows(conninfo)
    assert set(rows) == set(poisoned)
    for cid, (doc_id, content_hash, kind, message, run_id, _, _) in rows.items():
        assert doc_id == cid.split("#")[0] and content_hash == poisoned[cid]
        assert kind == "http_400" and "HTTP 400" in message and run_id == result.run_id

    # 2. a plain re-run tries them again (never acknowledged), and only them
    openai_server.reset()
    openai_server.reject_containing = {POISON}
    again = run(settings, store, embedder)
    assert again.dead_letters == len(poisoned) and again.embedded == 0
    assert openai_server.embedded_inputs == []
    assert all(any(POISON in t for t in r.inputs) for r in openai_server.requests)
    later = dead_letter_rows(conninfo)
    assert {c: r[5] for c, r in later.items()} == {c: r[5] for c, r in rows.items()}  # first
    assert all(later[c][6] > rows[c][6] for c in rows)  # last_seen moves on
    assert all(later[c][4] == again.run_id for c in rows)

    # 3. the provider is fixed: replay indexes them and the dead letters are gone
    openai_server.reset()
    [replay] = replay_dead_letters(
        [SPEC], get_warehouse(settings), embedder, lambda: store_for(settings), settings=settings
    )
    assert replay.before == len(poisoned) and replay.recovered == len(poisoned)
    assert replay.result.dead_letters == 0 and replay.result.embedded == len(poisoned)
    assert f"{len(poisoned)} of {len(poisoned)} dead letters recovered" in replay.to_text()
    assert dead_letter_rows(conninfo) == {}
    assert {i: r[0] for i, r in store_rows(conninfo, "products").items()} == want
    assert ledger_rows(conninfo, "products") == {i: (h, "written") for i, h in want.items()}
    # nothing left to replay
    none_left = replay_dead_letters(
        [SPEC], get_warehouse(settings), embedder, lambda: store_for(settings), settings=settings
    )
    assert none_left == []


def test_a_changed_document_gets_a_new_try_and_an_edit_into_poison_drops_the_old_vector(
    setup: tuple[Settings, PgVectorStore], openai_server: FakeOpenAIServer
) -> None:
    settings, store = setup
    conninfo = get_warehouse(settings).conninfo
    embedder = fake_openai(openai_server.base_url)
    docs = docs_with_poison()
    write_docs(conninfo, docs)
    openai_server.reject_containing = {POISON}
    run(settings, store, embedder)
    assert {r[0] for r in dead_letter_rows(conninfo).values()} == {"item:3", "item:6"}

    # item:3 loses its marker (the provider still rejects the marker): it is no longer dead
    docs["item:3"] = Doc("Item 3", "A thing the provider accepts now.")
    # item:1 was indexed; its new text is rejected: its old vector must not keep serving
    docs["item:1"] = Doc("Item 1", f"Edited into a {POISON} thing.")
    write_docs(conninfo, docs)
    result = run(settings, store, embedder)
    want = expected(docs, settings, embedder)
    dead = {i: h for i, h in want.items() if i.split("#")[0] in ("item:1", "item:6")}
    assert {c: r[1] for c, r in dead_letter_rows(conninfo).items()} == dead
    assert result.dead_letters == len(dead)
    indexed = {i: h for i, h in want.items() if i not in dead}
    assert {i: r[0] for i, r in store_rows(conninfo, "products").items()} == indexed
    assert ledger_rows(conninfo, "products") == {i: (h, "written") for i, h in indexed.items()}

    # the documents with dead letters are deleted: their rows go with them
    write_docs(conninfo, {i: d for i, d in docs.items() if i not in ("item:1", "item:6")})
    result = run(settings, store, embedder)
    assert result.dead_letters == 0 and dead_letter_rows(conninfo) == {}


def test_replay_is_a_subcommand() -> None:
    args = build_parser().parse_args(["replay", "--namespace", "products"])
    assert args.namespace == "products" and args.handler.__name__ == "cmd_replay"


def store_for(settings: Settings) -> PgVectorStore:
    """A store of its own (replay closes each one it is given)."""
    return PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
