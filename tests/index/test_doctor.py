"""The index doctor on both stores: index for real, inject every kind of drift straight into the
store (SQL for pgvector, the local Pinecone server's memory for Pinecone), diagnose, repair, and
diagnose a clean namespace again, without one embedding request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import psycopg
import pytest

from flows.cli import main
from tasks.embedders import get_embedder
from tasks.index.doctor import (
    CONTENT_HASH,
    DIMENSION,
    METADATA,
    MISSING,
    ORPHAN,
    DoctorError,
    diagnose,
    repair,
)
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import Ledger
from tasks.index.run import index_documents
from tasks.settings import Settings, get_settings
from tasks.stores.base import VectorStore
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.pinecone_server import FakePinecone
from tests.index.helpers import SPEC, Doc, fake_openai, write_docs
from tests.stores.conftest import (  # noqa: F401  (the Pinecone server fixtures)
    fake_pinecone,
    make_pinecone_store,
    pinecone_server,
)

DOCS = {
    f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.", price=float(i)) for i in range(8)
}
DIMS = 8
NS = SPEC.namespace  # the first build's physical namespace is the logical name


class Drift(Protocol):
    """Writes straight into one store's storage, past the store class."""

    def delete(self, vid: str) -> None: ...
    def add_foreign(self, vid: str) -> None: ...
    def set_metadata(self, vid: str, key: str, value: Any) -> None: ...
    def set_hash(self, vid: str, value: str) -> None: ...
    def set_short_vector(self, vid: str) -> None: ...


@dataclass
class PgDrift:
    conninfo: str
    table: str = f'semantic_index."{NS}"'

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(statement, params)

    def delete(self, vid: str) -> None:
        self._run(f"delete from {self.table} where id = %s", (vid,))

    def add_foreign(self, vid: str) -> None:
        self._run(
            f"insert into {self.table} (id, document_id, content_hash, text, embedding) "
            "values (%s, 'foreign', 'f00', 'not ours', %s::vector)",
            (vid, str([0.5] * DIMS)),
        )

    def set_metadata(self, vid: str, key: str, value: Any) -> None:
        self._run(
            f"update {self.table} set metadata = metadata || %s::jsonb where id = %s",
            (json.dumps({key: value}), vid),
        )

    def set_hash(self, vid: str, value: str) -> None:
        self._run(f"update {self.table} set content_hash = %s where id = %s", (value, vid))

    def set_short_vector(self, vid: str) -> None:
        # A typed vector column refuses other lengths: untype it, write 3 floats, and put the
        # declared dimension back in the catalog (the store then still sees an 8-dim table).
        with psycopg.connect(self.conninfo, autocommit=True) as conn, conn.transaction():
            conn.execute(f'drop index semantic_index."{NS}_embedding_hnsw"')
            conn.execute(f"alter table {self.table} alter column embedding type vector")
            conn.execute(
                f"update {self.table} set embedding = '[1, 2, 3]'::vector where id = %s", (vid,)
            )
            conn.execute(
                "update pg_attribute set atttypmod = %s where attname = 'embedding' "
                "and attrelid = %s::regclass",
                (DIMS, self.table),
            )


@dataclass
class PineconeDrift:
    server: FakePinecone
    index: str

    def _vectors(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        return self.server.indexes[self.index].namespaces[NS].vectors

    def _edit(self, vid: str, values: np.ndarray | None = None, **metadata: Any) -> None:
        with self.server.indexes[self.index].lock:
            old_values, old_metadata = self._vectors()[vid]
            new_values = old_values if values is None else values
            self._vectors()[vid] = (new_values, {**old_metadata, **metadata})
            self.server.indexes[self.index].namespaces[NS].touch()

    def delete(self, vid: str) -> None:
        with self.server.indexes[self.index].lock:
            del self._vectors()[vid]
            self.server.indexes[self.index].namespaces[NS].touch()

    def add_foreign(self, vid: str) -> None:
        with self.server.indexes[self.index].lock:
            metadata = {"document_id": "foreign", "content_hash": "f00"}
            self._vectors()[vid] = (np.full(DIMS, 0.5, dtype=np.float32), metadata)
            self.server.indexes[self.index].namespaces[NS].touch()

    def set_metadata(self, vid: str, key: str, value: Any) -> None:
        self._edit(vid, **{key: value})

    def set_hash(self, vid: str, value: str) -> None:
        self._edit(vid, content_hash=value)

    def set_short_vector(self, vid: str) -> None:
        self._edit(vid, values=np.array([1.0, 2.0, 3.0], dtype=np.float32))


@dataclass
class Pieces:
    settings: Settings
    store: VectorStore
    drift: Drift
    embedder: Any
    ledger: Ledger
    cache: EmbeddingCache
    server: FakeOpenAIServer

    def index(self) -> None:
        warehouse = get_warehouse(self.settings)
        index_documents(SPEC, warehouse, self.embedder, self.store, settings=self.settings)

    def diagnose(self) -> Any:
        return diagnose(self.ledger, self.store, NS, DIMS)

    def repair(self) -> Any:
        return repair(self.ledger, self.store, self.cache, self.embedder, self.settings, NS)


@pytest.fixture(params=["pgvector", "pinecone"])
def pieces(
    request: pytest.FixtureRequest,
    env: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
) -> Iterator[Pieces]:
    settings = get_settings().model_copy(update={"index_batch_size": 3})
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, DOCS)
    store: VectorStore
    drift: Drift
    if request.param == "pgvector":
        store = PgVectorStore(warehouse, schema=settings.vector_schema)
        drift = PgDrift(warehouse.conninfo)
    else:
        make: Callable[..., Any] = request.getfixturevalue("make_pinecone_store")
        pinecone = make()
        store = pinecone
        drift = PineconeDrift(request.getfixturevalue("fake_pinecone"), pinecone.config.index_name)
    ledger = Ledger(warehouse, settings.index_state_schema)
    cache = EmbeddingCache(settings.index_state_schema)
    ledger.setup()
    cache.setup(ledger.conn)
    embedder = fake_openai(openai_server.base_url, dimensions=DIMS)
    yield Pieces(settings, store, drift, embedder, ledger, cache, openai_server)
    ledger.close()
    store.close()


def inject_every_kind(drift: Drift) -> None:
    drift.delete("item:0#0")
    drift.add_foreign("foreign:1#0")
    drift.set_metadata("item:1#0", "category", "garden")
    drift.set_hash("item:2#0", "0" * 64)
    drift.set_short_vector("item:3#0")


def test_doctor_finds_each_kind_of_drift_and_repairs_it_from_the_cache(pieces: Pieces) -> None:
    pieces.index()
    before = pieces.diagnose()
    assert before.clean and before.physical == NS
    assert before.ledger_records == before.store_records == len(DOCS)

    inject_every_kind(pieces.drift)
    found = pieces.diagnose()

    assert found.counts == {
        MISSING: 1,
        ORPHAN: 1,
        DIMENSION: 1,
        CONTENT_HASH: 1,
        METADATA: 1,
    }
    assert found.examples == {
        MISSING: ["item:0#0"],
        ORPHAN: ["foreign:1#0"],
        DIMENSION: ["item:3#0"],
        CONTENT_HASH: ["item:2#0"],
        METADATA: ["item:1#0"],
    }
    assert (found.ledger_records, found.store_records) == (len(DOCS), len(DOCS))
    assert "5 drifting" in found.to_text() and "orphan: 1 (e.g. foreign:1#0)" in found.to_text()
    assert found.payload()["counts"][MISSING] == 1

    pieces.server.reset()
    requests = pieces.embedder.usage.requests
    repaired = pieces.repair()

    assert repaired.repaired == {"upserted": 4, "deleted": 1, "embedded": 0}
    assert pieces.server.requests == [] and pieces.embedder.usage.requests == requests
    again = pieces.diagnose()
    assert again.clean, again.to_text()
    assert again.ledger_records == again.store_records == len(DOCS)
    # The repaired store answers like the indexed one: a second repair has nothing to do.
    assert pieces.repair().repaired == {}


def test_repair_embeds_only_what_the_cache_lost(pieces: Pieces) -> None:
    pieces.index()
    pieces.drift.delete("item:5#0")
    pieces.drift.delete("item:6#0")
    with psycopg.connect(get_warehouse(pieces.settings).conninfo, autocommit=True) as conn:
        conn.execute(
            "delete from index_state.embedding_cache where content_hash in (select content_hash "
            "from index_state.chunks where chunk_id = any(%s))",
            (["item:5#0", "item:6#0"],),
        )
    pieces.server.reset()

    report = pieces.repair()

    assert report.repaired == {"upserted": 2, "deleted": 0, "embedded": 2}
    assert sorted(pieces.server.embedded_inputs) == [DOCS["item:5"].text, DOCS["item:6"].text]
    assert pieces.diagnose().clean


def test_repair_refuses_a_namespace_of_another_configuration(pieces: Pieces) -> None:
    pieces.index()
    pieces.drift.delete("item:0#0")
    other = pieces.settings.model_copy(update={"chunk_tokens": 64})

    with pytest.raises(DoctorError, match="semantic-index index"):
        repair(pieces.ledger, pieces.store, pieces.cache, pieces.embedder, other, NS)
    assert pieces.diagnose().counts[MISSING] == 1  # nothing written


def test_nothing_served_yet_is_nothing_to_check(pieces: Pieces) -> None:
    report = pieces.diagnose()
    assert report.physical is None and report.clean
    assert "not indexed yet" in report.to_text()


def indexed_with_drift(env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer) -> None:
    """Index ``DOCS`` with the embedder the settings build (as the command and the flow do),
    then inject one drift of each kind into pgvector."""
    env.setenv("OPENAI_API_KEY", "test-key")
    env.setenv("OPENAI_BASE_URL", openai_server.base_url)
    env.setenv("EMBEDDING_DIMENSIONS", str(DIMS))
    get_settings.cache_clear()
    settings = get_settings()
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, DOCS)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    try:
        index_documents(SPEC, warehouse, get_embedder(settings), store, settings=settings)
    finally:
        store.close()
    inject_every_kind(PgDrift(warehouse.conninfo))
    openai_server.reset()


@pytest.mark.integration
def test_cli_doctor_reports_then_repairs(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    indexed_with_drift(env, openai_server)

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"{NS} ({NS}): {len(DOCS)} in the ledger" in out and "5 drifting" in out

    assert main(["doctor", "--repair", "--namespace", NS]) == 0
    out = capsys.readouterr().out
    assert "repaired: 4 upserted, 1 deleted, 0 embedded" in out
    assert "After repair:" in out and "no drift" in out
    assert openai_server.requests == []
    assert main(["doctor"]) == 0


@pytest.mark.integration
def test_doctor_flow_emits_drift_and_repairs(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer, prefect_harness: None
) -> None:
    from flows.doctor import doctor

    indexed_with_drift(env, openai_server)
    events: list[tuple[str, str, dict[str, Any]]] = []
    env.setattr("flows.doctor.emit_stage_event", lambda s, o, p: events.append((s, o, p)))

    [found] = doctor()
    assert found.counts[ORPHAN] == 1 and not found.clean
    [(stage, outcome, payload)] = events
    assert (stage, outcome, payload["repaired"]) == ("index", "drift", False)
    [namespace] = payload["namespaces"]
    assert namespace["counts"] == found.counts and namespace["examples"][MISSING] == ["item:0#0"]

    [fixed] = doctor(repair=True)
    assert fixed.repaired == {"upserted": 4, "deleted": 1, "embedded": 0}
    assert events[-1][2]["repaired"] is True
    events.clear()
    [after] = doctor()
    assert after.clean and events == []
    assert openai_server.requests == []
