"""Per-run document changes (``index_state.run_documents``) after real index runs (embedded
Postgres, ledger, pgvector, the OpenAI SDK against the local server): what each run records, that
a run with nothing new records nothing (also when the document hashes are missing, as in a ledger
from before them), and that ``semantic-index diff`` composes added/changed/deleted across runs the
way the namespace's contents say, read independently from the ledger's chunks after each run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest

from tasks.index.chunking import Chunk
from tasks.index.ledger import Ledger, RunRecord
from tasks.index.run import IndexResult, PagePlan, Plan, document_changes, index_documents
from tasks.ops.diff import compare, diff_runs
from tasks.settings import Settings, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, Doc, fake_openai, write_docs

pytestmark = pytest.mark.integration

DOCS = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(6)}


@dataclass
class Runner:
    settings: Settings
    store: PgVectorStore
    ledger: Ledger
    openai_url: str

    @property
    def conninfo(self) -> str:
        return get_warehouse(self.settings).conninfo

    def index(self, docs: dict[str, Doc]) -> IndexResult:
        write_docs(self.conninfo, docs)
        embedder = fake_openai(self.openai_url, dimensions=8)
        return index_documents(
            SPEC, get_warehouse(self.settings), embedder, self.store, settings=self.settings
        )

    def changes(self, run_id: int | None) -> dict[str, str]:
        """What the run recorded, read straight from the table."""
        with psycopg.connect(self.conninfo) as conn:
            rows = conn.execute(
                "select document_id, change from index_state.run_documents where run_id = %s",
                (run_id,),
            ).fetchall()
        return dict(rows)

    def snapshot(self, physical: str) -> dict[str, str]:
        """``{document id: digest of its written chunks}``: what the namespace holds, from the
        ledger's chunk rows (independently of the recorded changes)."""
        with psycopg.connect(self.conninfo) as conn:
            rows = conn.execute(
                "select document_id, md5(string_agg(chunk_id || content_hash || metadata_hash, "
                "',' order by chunk_id)) from index_state.chunks "
                "where namespace = %s and state = 'written' group by document_id",
                (physical,),
            ).fetchall()
        return dict(rows)


@pytest.fixture
def runner(env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer) -> Iterator[Runner]:
    get_settings.cache_clear()
    # Pages of two documents, only one held by the plan: changes are recorded page by page,
    # also for pages planned again when written.
    settings = get_settings().model_copy(
        update={"index_page_documents": 2, "index_plan_held_chunks": 1}
    )
    warehouse = get_warehouse(settings)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    ledger = Ledger(warehouse, settings.index_state_schema)
    yield Runner(settings, store, ledger, openai_server.base_url)
    ledger.close()
    store.close()


def expected(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], ...]:
    """(added, changed, deleted) between two snapshots."""
    return (
        sorted(after.keys() - before.keys()),
        sorted(d for d in before.keys() & after.keys() if before[d] != after[d]),
        sorted(before.keys() - after.keys()),
    )


def test_runs_record_their_changes_and_diff_composes_them(runner: Runner) -> None:
    first = runner.index(DOCS)
    physical = first.physical_namespace
    snapshots = {first.run_id: runner.snapshot(physical)}
    assert runner.changes(first.run_id) == dict.fromkeys(DOCS, "added")

    # A run with nothing new records nothing ...
    again = runner.index(DOCS)
    assert (again.upserted, again.deleted) == (0, 0) and runner.changes(again.run_id) == {}
    # ... also when every document is planned again because its recorded hash is gone (a ledger
    # from before document hashes): its chunks are all written as they are.
    with psycopg.connect(runner.conninfo, autocommit=True) as conn:
        conn.execute("delete from index_state.documents")
    rehashed = runner.index(DOCS)
    assert rehashed.upserted == 0 and runner.changes(rehashed.run_id) == {}

    # Run 2 adds two documents, changes one's text and one's metadata, deletes one.
    second_docs = dict(DOCS)
    second_docs["item:8"] = Doc("Item 8", "A new thing.")
    second_docs["item:9"] = Doc("Item 9", "Another new thing.")
    second_docs["item:1"] = Doc("Item 1", "A sturdier thing number 1.")
    second_docs["item:4"] = Doc("Item 4", "A sturdy thing number 4.", category="garden")
    del second_docs["item:3"]
    second = runner.index(second_docs)
    snapshots[second.run_id] = runner.snapshot(physical)
    assert runner.changes(second.run_id) == {
        "item:8": "added",
        "item:9": "added",
        "item:1": "changed",
        "item:4": "changed",
        "item:3": "deleted",
    }

    # Run 3: added then deleted (9), added then changed (8), changed then deleted (1), deleted
    # then added again with a new text (3); 4 stays as run 2 left it.
    third_docs = dict(second_docs)
    del third_docs["item:9"], third_docs["item:1"]
    third_docs["item:8"] = Doc("Item 8", "A new thing, improved.")
    third_docs["item:3"] = Doc("Item 3", "A sturdy thing number 3, back again.")
    third = runner.index(third_docs)
    snapshots[third.run_id] = runner.snapshot(physical)
    assert runner.changes(third.run_id) == {
        "item:9": "deleted",
        "item:8": "changed",
        "item:1": "deleted",
        "item:3": "added",
    }

    runs = [first.run_id or 0, second.run_id or 0, third.run_id or 0]
    for a in runs:
        for b in runs:
            diff = diff_runs(runner.ledger, a, b)
            assert diff.documents_known and diff.relative_to is None
            assert (diff.added, diff.changed, diff.deleted) == expected(
                snapshots[a], snapshots[b]
            ), (a, b)
            assert (diff.documents_a, diff.documents_b) == (
                len(snapshots[a]),
                len(snapshots[b]),
            )
    composed = diff_runs(runner.ledger, runs[0], runs[2])
    assert (composed.added, composed.changed, composed.deleted) == (
        ["item:8"],
        ["item:3", "item:4"],
        ["item:1"],
    )
    assert "documents: 1 added, 2 changed, 1 deleted (6 -> 6)" in composed.to_text()
    assert composed.as_dict()["documents"]["relative_to"] is None


def test_deleted_then_added_again_is_changed(runner: Runner) -> None:
    # The composition rule in the database: deleted then added is changed, even with the same
    # text (the namespace lost the document in between).
    first = runner.index(DOCS)
    without = {k: v for k, v in DOCS.items() if k != "item:2"}
    gone = runner.index(without)
    back = runner.index(DOCS)
    assert runner.changes(gone.run_id) == {"item:2": "deleted"}
    assert runner.changes(back.run_id) == {"item:2": "added"}
    diff = diff_runs(runner.ledger, first.run_id or 0, back.run_id or 0)
    assert (diff.added, diff.changed, diff.deleted) == ([], ["item:2"], [])


def record(run_id: int, documents: dict[str, str] | None, **kw: object) -> RunRecord:
    values: dict[str, object] = {
        "run_id": run_id,
        "logical_namespace": "products",
        "namespace": "products",
        "provider": "openai",
        "model": "m",
        "fingerprint": "f",
        "status": "completed",
        "started_at": datetime(2026, 12, 1, tzinfo=UTC),
        "finished_at": None,
        "chunks": None,
        "embedded": None,
        "deleted": None,
        "input_tokens": None,
        "estimated_cost_usd": None,
        "versions": {},
        "index_config": None,
        "documents": documents,
    }
    values.update(kw)
    return RunRecord(**values)  # type: ignore[arg-type]


def test_rows_from_before_run_documents_compare_their_snapshots() -> None:
    old_a = record(1, {"a": "1", "b": "1", "c": "1"})
    old_b = record(2, {"a": "1", "b": "2", "d": "1"})
    diff = compare(old_a, old_b)
    assert (diff.added, diff.changed, diff.deleted) == (["d"], ["b"], ["c"])
    assert (diff.documents_a, diff.documents_b) == (3, 3)
    unknown = compare(record(1, None), old_b)
    assert not unknown.documents_known
    assert "documents: not recorded by one of the runs" in unknown.to_text()


def test_across_rebuilds_the_delta_is_relative_to_the_new_namespace(runner: Runner) -> None:
    default = runner.settings
    smaller = default.model_copy(update={"chunk_tokens": 64})
    first = runner.index(DOCS)
    runner.settings = smaller
    rebuilt = runner.index(DOCS)  # a new physical namespace; the first one is dropped
    runner.settings = default
    back = runner.index(DOCS)  # a third one, the second dropped
    runner.settings = smaller
    remade = runner.index(DOCS)  # the second one's name again: made anew
    assert rebuilt.switched and back.switched and remade.switched
    assert remade.physical_namespace == rebuilt.physical_namespace
    assert len({first.physical_namespace, rebuilt.physical_namespace, back.physical_namespace}) == 3
    for run in (first, rebuilt, back, remade):
        assert runner.changes(run.run_id) == dict.fromkeys(DOCS, "added")

    # Each first run of a namespace added every document to it: the diff says it is relative,
    # also between two runs of one namespace name made again in between.
    for a, b in ((first, rebuilt), (rebuilt, back), (first, back), (rebuilt, remade)):
        diff = diff_runs(runner.ledger, a.run_id or 0, b.run_id or 0)
        assert (diff.added, diff.changed, diff.deleted) == (sorted(DOCS), [], []), (a, b)
        assert diff.relative_to == b.physical_namespace
        # The namespace made anew counted its documents afresh, not on top of the dropped one's.
        assert (diff.documents_a, diff.documents_b) == (len(DOCS), len(DOCS))
    again = runner.index(DOCS)
    diff = diff_runs(runner.ledger, remade.run_id or 0, again.run_id or 0)
    assert diff.relative_to is None and (diff.added, diff.changed, diff.deleted) == ([], [], [])
    assert (diff.documents_a, diff.documents_b) == (len(DOCS), len(DOCS))


def chunk(cid: str) -> Chunk:
    doc = cid.split("#")[0]
    return Chunk(cid, doc, int(cid.split("#")[1]), "t", {}, "h", "m", 1)


@pytest.mark.parametrize(
    ("chunks", "known", "upsert", "metadata", "delete", "rejected", "want"),
    [
        # a new document, a new one all rejected (never in the namespace)
        (1, [], ["d#0"], [], [], [], "added"),
        (1, [], ["d#0"], [], [], ["d#0"], None),
        # planned again with nothing to write (hash missing), or a dead letter rejected again
        (2, ["d#0", "d#1"], [], [], [], [], None),
        (2, ["d#0"], ["d#1"], [], [], ["d#1"], None),
        # text, metadata, a chunk fewer; a rejected new text deletes the old one from the store
        (1, ["d#0"], ["d#0"], [], [], [], "changed"),
        (1, ["d#0"], [], ["d#0"], [], [], "changed"),
        (1, ["d#0", "d#1"], [], [], ["d#1"], [], "changed"),
        (2, ["d#0", "d#1"], ["d#1"], [], [], ["d#1"], "changed"),
        # no text any more, every new text rejected
        (0, ["d#0"], [], [], ["d#0"], [], "deleted"),
        (1, ["d#0"], ["d#0"], [], [], ["d#0"], "deleted"),
    ],
)
def test_document_changes(
    chunks: int,
    known: list[str],
    upsert: list[str],
    metadata: list[str],
    delete: list[str],
    rejected: list[str],
    want: str | None,
) -> None:
    page = PagePlan(
        None,
        "d",
        changed={"d": ("hash", chunks)},
        changes=Plan(
            upsert=[chunk(c) for c in upsert],
            update_metadata=[chunk(c) for c in metadata],
            delete=delete,
        ),
        known=dict.fromkeys(known, "d"),
    )
    assert document_changes(page, rejected) == ({} if want is None else {"d": want})
