"""The steps of an index run one by one, on the real pieces (embedded Postgres, the ledger, the
embedding cache, pgvector, the OpenAI SDK against the local server): planning writes nothing,
applying writes and acknowledges without switching, validating switches only a consistent
namespace, and checking refuses what must not be written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tasks.embedders import EmbeddingBudgetExceeded
from tasks.errors import MassDeleteRefused, ValidationFailed
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import Ledger
from tasks.index.run import IndexRun, index_documents
from tasks.progress import PhaseUpdate, Progress
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

DOCS = {
    f"item:{i}": Doc(f"Item {i}", " ".join(["A sturdy thing."] * (i + 1)), price=float(i))
    for i in range(5)
}


@dataclass
class Pieces:
    """What a run is made of, set up once per test."""

    settings: Settings
    store: PgVectorStore
    embedder: Any
    ledger: Ledger
    cache: EmbeddingCache
    server: FakeOpenAIServer

    @property
    def conninfo(self) -> str:
        return get_warehouse(self.settings).conninfo

    def index(self) -> None:
        """A whole run, the way the flows run it."""
        warehouse = get_warehouse(self.settings)
        index_documents(SPEC, warehouse, self.embedder, self.store, settings=self.settings)

    def open(self, progress: Progress | None = None, **settings: Any) -> IndexRun:
        return IndexRun.open(
            SPEC,
            get_warehouse(self.settings),
            self.embedder,
            self.store,
            ledger=self.ledger,
            cache=self.cache,
            settings=self.settings.model_copy(update=settings),
            progress=progress,
        )


@pytest.fixture
def pieces(env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer) -> Iterator[Pieces]:
    settings = get_settings().model_copy(update={"index_batch_size": 2})
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, DOCS)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    ledger = Ledger(warehouse, settings.index_state_schema)
    cache = EmbeddingCache(settings.index_state_schema)
    ledger.setup()
    cache.setup(ledger.conn)
    yield Pieces(settings, store, fake_openai(openai_server.base_url), ledger, cache, openai_server)
    ledger.close()
    store.close()


def test_plan_reads_only_and_orders_the_texts_longest_first(pieces: Pieces) -> None:
    seen: list[PhaseUpdate] = []
    run = pieces.open(Progress(SPEC.namespace, seen.append))
    assert (run.target, run.serving, run.result.rebuilt) == ("products", None, True)

    plan = run.plan()

    want = expected(DOCS, pieces.settings, pieces.embedder)
    assert plan.chunks == len(want) and {c.id for c in plan.upsert} == set(want)
    assert plan.token_counts == sorted(plan.token_counts, reverse=True)
    assert plan.texts[0] == DOCS["item:4"].text  # the longest document first
    assert plan.refusal is None and plan.cached == {}
    assert run.result.embedded == len(want)
    assert run.result.tokens_to_embed == sum(plan.token_counts) > 0
    assert {u.phase for u in seen} == {"chunking", "planning"}
    # nothing sent, nothing written, nothing registered
    assert pieces.server.requests == []
    assert tables(pieces.conninfo) == set() and ledger_rows(pieces.conninfo, "products") == {}
    assert pieces.ledger.namespaces("products") == []


def test_apply_writes_and_acknowledges_then_validate_switches(pieces: Pieces) -> None:
    run = pieces.open()
    plan = run.plan()

    run.apply(plan)

    want = expected(DOCS, pieces.settings, pieces.embedder)
    assert {i: r[0] for i, r in store_rows(pieces.conninfo, "products").items()} == want
    assert ledger_rows(pieces.conninfo, "products") == {i: (h, "written") for i, h in want.items()}
    assert sorted(pieces.server.embedded_inputs) == sorted(d.text for d in DOCS.values())
    assert run.result.requests >= 1 and run.result.input_tokens > 0
    # written but not yet validated: registered as a build, serving nothing
    assert [e.state for e in pieces.ledger.namespaces("products")] == ["building"]
    assert pieces.ledger.serving("products") is None

    run.validate_and_switch(plan)

    assert pieces.ledger.serving("products") == "products"
    assert run.result.switched and run.result.vectors_in_store == len(want)


def test_validate_refuses_a_store_that_lost_a_record(pieces: Pieces) -> None:
    run = pieces.open()
    plan = run.plan()
    run.apply(plan)
    pieces.store.delete("products", ["item:0#0"])

    with pytest.raises(ValidationFailed, match="store has 4 vectors, want 5"):
        run.validate_and_switch(plan)
    assert pieces.ledger.serving("products") is None and not run.result.switched


def test_a_new_configuration_is_built_beside_and_switched_only_when_valid(pieces: Pieces) -> None:
    pieces.index()
    run = pieces.open(chunk_tokens=64)
    assert run.serving == "products" and run.target != "products" and run.result.rebuilt
    plan = run.plan()
    assert plan.refusal is None  # the rebuild keeps every chunk the old namespace serves
    assert len(plan.cached) == len(plan.upsert)  # same texts, same embedder: all cached

    pieces.server.reset()
    run.apply(plan)
    assert pieces.server.requests == []
    assert pieces.ledger.serving("products") == "products"  # search still reads the old one

    run.validate_and_switch(plan)
    assert pieces.ledger.serving("products") == run.target
    # DROP_RETIRED_NAMESPACES (default): the old one is gone from the store and the ledger
    assert [e.physical for e in pieces.ledger.namespaces("products")] == [run.target]
    assert "products" not in tables(pieces.conninfo)


def test_check_refuses_a_mass_delete_and_an_over_budget_run(pieces: Pieces) -> None:
    pieces.index()
    write_docs(pieces.conninfo, {})
    run = pieces.open()
    plan = run.plan()
    assert plan.refusal is not None and "returned no rows" in plan.refusal
    with pytest.raises(MassDeleteRefused):
        run.check(plan)
    assert len(store_rows(pieces.conninfo, "products")) == len(DOCS)  # planning deleted nothing

    write_docs(pieces.conninfo, {**DOCS, "item:new": Doc("New", "A brand new kettle.")})
    run = pieces.open(max_tokens_per_run=1)
    plan = run.plan()
    assert plan.refusal is None and plan.texts == ["New\n\nA brand new kettle."]
    with pytest.raises(EmbeddingBudgetExceeded, match="MAX_TOKENS_PER_RUN=1"):
        run.check(plan)
    run = pieces.open()
    run.check(run.plan())  # within budget: nothing to object to
