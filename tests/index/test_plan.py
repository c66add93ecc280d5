"""The diff between desired chunks and the ledger (pure, table-driven)."""

from __future__ import annotations

import pytest

from tasks.index.chunking import Chunk, metadata_hash, text_hash
from tasks.index.ledger import LedgerEntry
from tasks.index.run import plan_changes

FP = "fp1"


def chunk(cid: str, text: str, meta: int = 0) -> Chunk:
    metadata = {"m": meta}
    return Chunk(
        cid, cid.split("#")[0], 0, text, metadata, text_hash(text), metadata_hash(metadata)
    )


def entry(cid: str, text: str, meta: int = 0, state: str = "written", fp: str = FP) -> LedgerEntry:
    return LedgerEntry(
        cid, cid.split("#")[0], text_hash(text), metadata_hash({"m": meta}), fp, state
    )


CASES = [
    # (name, desired, ledger, upsert ids, metadata ids, delete ids, unchanged)
    ("empty ledger: all new", [chunk("a#0", "x")], [], ["a#0"], [], [], 0),
    ("unchanged", [chunk("a#0", "x")], [entry("a#0", "x")], [], [], [], 1),
    ("text changed", [chunk("a#0", "y")], [entry("a#0", "x")], ["a#0"], [], [], 0),
    ("metadata only", [chunk("a#0", "x", 1)], [entry("a#0", "x", 0)], [], ["a#0"], [], 0),
    (
        "text and metadata changed: one upsert",
        [chunk("a#0", "y", 1)],
        [entry("a#0", "x", 0)],
        ["a#0"],
        [],
        [],
        0,
    ),
    ("deleted document", [], [entry("a#0", "x"), entry("a#1", "z")], [], [], ["a#0", "a#1"], 0),
    (
        "shrunk document",
        [chunk("a#0", "x")],
        [entry("a#0", "x"), entry("a#1", "z")],
        [],
        [],
        ["a#1"],
        1,
    ),
    (
        "pending row is re-upserted",
        [chunk("a#0", "x")],
        [entry("a#0", "x", state="pending")],
        ["a#0"],
        [],
        [],
        0,
    ),
    (
        "pending row no longer wanted is deleted",
        [],
        [entry("a#0", "x", state="pending")],
        [],
        [],
        ["a#0"],
        0,
    ),
    (
        "other fingerprint is re-upserted",
        [chunk("a#0", "x")],
        [entry("a#0", "x", fp="old")],
        ["a#0"],
        [],
        [],
        0,
    ),
]


@pytest.mark.parametrize(
    ("desired", "ledger", "upsert", "metadata", "delete", "unchanged"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_changes(
    desired: list[Chunk],
    ledger: list[LedgerEntry],
    upsert: list[str],
    metadata: list[str],
    delete: list[str],
    unchanged: int,
) -> None:
    plan = plan_changes({c.id: c for c in desired}, {e.chunk_id: e for e in ledger}, FP)
    assert [c.id for c in plan.upsert] == upsert
    assert [c.id for c in plan.update_metadata] == metadata
    assert plan.delete == delete
    assert plan.unchanged == unchanged
