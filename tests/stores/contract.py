"""The vector-store contract: behaviour every :class:`~tasks.stores.base.VectorStore` must have.

Subclass :class:`VectorStoreContract` in a test module and provide a ``store`` fixture that yields
a fresh, empty store (its own database / index). Expected results are computed here in Python
from the records, never copied from a store's output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tasks.errors import VectorStoreError
from tasks.stores.base import MetadataValue, VectorRecord, VectorStore

DIM = 8
NS = "contract_docs"
OTHER_NS = "contract_other"


def make_records(n: int = 10, seed: int = 7, version: str = "v1") -> list[VectorRecord]:
    """``n`` records with distinct random unit vectors and filterable metadata."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        VectorRecord(
            id=f"doc-{i}#0",
            document_id=f"doc-{i}",
            values=[float(x) for x in vectors[i]],
            text=f"text of document {i} ({version})",
            content_hash=f"hash-{i}-{version}",
            metadata={
                "document_id": f"doc-{i}",
                "chunk_position": 0,
                "category": "kitchen" if i % 2 == 0 else "garden",
                "price": i * 10,
                "in_stock": i % 3 == 0,
                "tags": ["all", f"t{i}"],
                "updated_at": f"2026-01-{i + 1:02d}",
            },
        )
        for i in range(n)
    ]


def _matching(records: list[VectorRecord], predicate: Any) -> set[str]:
    return {r.id for r in records if predicate(r.metadata)}


#: (project filter, the same condition as a Python predicate over metadata)
FILTER_CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "eq_shorthand": ({"category": "kitchen"}, lambda m: m["category"] == "kitchen"),
    "eq": ({"category": {"$eq": "garden"}}, lambda m: m["category"] == "garden"),
    "eq_bool": ({"in_stock": True}, lambda m: m["in_stock"] is True),
    "eq_number": ({"price": 30}, lambda m: m["price"] == 30),
    "eq_list_member": ({"tags": "t3"}, lambda m: "t3" in m["tags"]),
    "in": ({"price": {"$in": [10, 30, 999]}}, lambda m: m["price"] in (10, 30)),
    "in_strings": (
        {"category": {"$in": ["garden", "bathroom"]}},
        lambda m: m["category"] == "garden",
    ),
    "in_list_member": ({"tags": {"$in": ["t1", "t2"]}}, lambda m: {"t1", "t2"} & set(m["tags"])),
    "gt": ({"price": {"$gt": 50}}, lambda m: m["price"] > 50),
    "gte": ({"price": {"$gte": 50}}, lambda m: m["price"] >= 50),
    "lt": ({"price": {"$lt": 20}}, lambda m: m["price"] < 20),
    "lte": ({"price": {"$lte": 20}}, lambda m: m["price"] <= 20),
    "range": ({"price": {"$gte": 20, "$lt": 60}}, lambda m: 20 <= m["price"] < 60),
    "date_range": (
        {"updated_at": {"$gte": "2026-01-04", "$lt": "2026-01-07"}},
        lambda m: "2026-01-04" <= m["updated_at"] < "2026-01-07",
    ),
    "and": (
        {"category": "garden", "price": {"$gte": 50}, "in_stock": True},
        lambda m: m["category"] == "garden" and m["price"] >= 50 and m["in_stock"],
    ),
    "nothing": ({"category": "bathroom"}, lambda m: False),
}


class VectorStoreContract:
    """Tests every store passes. Needs a ``store`` fixture yielding an empty store."""

    def _load(self, store: VectorStore, records: list[VectorRecord], ns: str = NS) -> None:
        store.ensure_namespace(ns, DIM)
        assert store.upsert(ns, records) == len(records)

    # ---------------------------------------------------------------- writes
    def test_upsert_is_idempotent(self, store: VectorStore) -> None:
        records = make_records()
        for _ in range(2):
            self._load(store, records)
            assert store.count(NS) == len(records)
            assert store.content_hashes(NS) == {r.id: r.content_hash for r in records}
        hits = store.query(NS, records[0].values, top_k=len(records))
        assert sorted(h.id for h in hits) == sorted(r.id for r in records)

    def test_upsert_replaces_by_id(self, store: VectorStore) -> None:
        self._load(store, make_records())
        changed = make_records(version="v2")[:3]
        store.upsert(NS, changed)
        assert store.count(NS) == 10
        hashes = store.content_hashes(NS)
        assert [hashes[r.id] for r in changed] == [r.content_hash for r in changed]
        assert hashes["doc-5#0"] == "hash-5-v1"
        top = store.query(NS, changed[1].values, top_k=1)[0]
        assert (top.id, top.text) == (changed[1].id, changed[1].text)

    def test_search_hit_carries_document_text_and_metadata(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records)
        hit = store.query(NS, records[4].values, top_k=1)[0]
        assert hit.id == records[4].id
        assert hit.document_id == records[4].document_id
        assert hit.text == records[4].text
        assert hit.metadata == records[4].metadata

    def test_delete_by_id_ignores_missing_ids(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records)
        gone = [records[1].id, records[7].id, "no-such-id#0"]
        assert store.delete(NS, gone) == 3
        assert store.count(NS) == 8
        assert set(store.content_hashes(NS)) == {r.id for r in records} - set(gone)
        hits = store.query(NS, records[1].values, top_k=10)
        assert records[1].id not in {h.id for h in hits}
        store.delete(NS, gone)  # again: nothing left to delete, no error
        assert store.count(NS) == 8

    def test_missing_namespace_reads_as_empty(self, store: VectorStore) -> None:
        self._load(store, make_records(2))
        assert store.count("contract_missing") == 0
        assert store.content_hashes("contract_missing") == {}
        assert store.delete("contract_missing", ["x"]) == 1
        assert store.query("contract_missing", [1.0] * DIM, top_k=3) == []

    # ---------------------------------------------------------------- queries
    def test_top_k_ordering(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records)
        query = np.asarray(records[6].values)
        hits = store.query(NS, list(query), top_k=4)
        assert len(hits) == 4
        assert hits[0].id == records[6].id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        # The exact cosine ranking, computed independently.
        matrix = np.asarray([r.values for r in records])
        expected = [records[i].id for i in np.argsort(-(matrix @ query))[:4]]
        assert [h.id for h in hits] == expected

    @pytest.mark.parametrize("case", sorted(FILTER_CASES))
    def test_filter(self, store: VectorStore, case: str) -> None:
        records = make_records()
        self._load(store, records)
        flt, predicate = FILTER_CASES[case]
        hits = store.query(NS, records[0].values, top_k=len(records), filter=flt)
        assert {h.id for h in hits} == _matching(records, predicate)

    def test_filter_with_top_k_keeps_best(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records)
        query = np.asarray(records[2].values)
        hits = store.query(NS, list(query), top_k=2, filter={"category": "kitchen"})
        kitchen = [r for r in records if r.metadata["category"] == "kitchen"]
        scores = np.asarray([r.values for r in kitchen]) @ query
        assert [h.id for h in hits] == [kitchen[i].id for i in np.argsort(-scores)[:2]]

    @pytest.mark.parametrize(
        "bad",
        [
            {"price": {"$regex": "x"}},
            {"price": {"$in": []}},
            {"price": {"$gt": [1, 2]}},
            {"bad key!": 1},
            {"price": {}},
        ],
    )
    def test_invalid_filter_is_rejected(self, store: VectorStore, bad: dict[str, Any]) -> None:
        self._load(store, make_records(2))
        with pytest.raises(VectorStoreError):
            store.query(NS, [1.0] * DIM, top_k=1, filter=bad)

    # ---------------------------------------------------------------- namespaces
    def test_namespaces_are_isolated(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records[:6], NS)
        self._load(store, records[4:], OTHER_NS)
        assert (store.count(NS), store.count(OTHER_NS)) == (6, 6)
        store.delete(NS, [records[4].id])
        assert (store.count(NS), store.count(OTHER_NS)) == (5, 6)
        assert {h.id for h in store.query(OTHER_NS, records[0].values, top_k=10)} == {
            r.id for r in records[4:]
        }
        assert set(store.content_hashes(NS)) == {r.id for r in records[:4]} | {records[5].id}

    def test_drop_namespace(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records, NS)
        self._load(store, records[:3], OTHER_NS)
        store.drop_namespace(NS)
        assert store.count(NS) == 0
        assert store.content_hashes(NS) == {}
        assert store.count(OTHER_NS) == 3
        store.drop_namespace(NS)  # dropping twice is fine

    # ---------------------------------------------------------------- errors
    def test_dimension_mismatch_is_an_error(self, store: VectorStore) -> None:
        records = make_records(3)
        self._load(store, records)
        with pytest.raises(VectorStoreError, match="dimension"):
            store.ensure_namespace(NS, DIM + 1)
        short = VectorRecord("short#0", "short", [1.0] * (DIM - 1), "t", "h", {})
        with pytest.raises(VectorStoreError, match="dimensions"):
            store.upsert(NS, [short])
        with pytest.raises(VectorStoreError, match="dimensions"):
            store.query(NS, [1.0] * (DIM + 2), top_k=1)
        assert store.count(NS) == 3

    # ---------------------------------------------------------------- metadata, hashes
    def test_update_metadata_replaces_metadata_only(self, store: VectorStore) -> None:
        records = make_records()
        self._load(store, records)
        target = records[3]
        new_metadata: dict[str, MetadataValue] = {
            "document_id": target.document_id,
            "category": "bathroom",
            "price": 7,
        }
        assert store.update_metadata(NS, [(target.id, new_metadata), ("no-such#0", {})]) == 2
        hit = store.query(NS, target.values, top_k=1)[0]
        assert hit.id == target.id
        assert hit.score == pytest.approx(1.0, abs=1e-4)
        assert hit.metadata == new_metadata  # dropped keys are gone
        assert hit.text == target.text
        assert store.content_hashes(NS)[target.id] == target.content_hash
        assert {h.id for h in store.query(NS, target.values, 10, {"category": "bathroom"})} == {
            target.id
        }
        assert store.query(NS, target.values, 10, {"tags": "t3"}) == []
        assert store.count(NS) == 10

    def test_content_hashes_of_many_records(self, store: VectorStore) -> None:
        # More records than one list page (100) so paging is exercised.
        records = make_records(230, seed=11)
        self._load(store, records)
        assert store.content_hashes(NS) == {r.id: r.content_hash for r in records}
        assert store.count(NS) == 230
