"""Pinecone limits: oversize metadata, oversize batches, bad ids and dimensions are handled before
anything is sent (or with a clear error), never by a request the server rejects."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tasks.errors import VectorStoreError
from tasks.stores.base import VectorRecord
from tasks.stores.pinecone import (
    MAX_METADATA_BYTES,
    PineconeStore,
    pack_batches,
    translate_filter,
)
from tests.fakes.pinecone_server import MAX_UPSERT_BYTES, FakePinecone
from tests.stores.conftest import API_KEY

NS = "limits"


def records(n: int, dim: int, text_bytes: int = 100, seed: int = 3) -> list[VectorRecord]:
    """``n`` records of ``dim`` random dimensions with ``text_bytes`` of text each."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        VectorRecord(
            id=f"r{i}",
            document_id=f"d{i}",
            values=values[i].tolist(),
            text=("x" * text_bytes),
            content_hash=f"h{i}",
            metadata={"document_id": f"d{i}", "chunk_position": 0, "title": f"Title {i}"},
        )
        for i in range(n)
    ]


def rejected(server: FakePinecone) -> dict[str, int]:
    """Responses that refused a request (4xx other than 404)."""
    return {
        key: n
        for key, n in server.counters.items()
        if ":" in key and key.split(":")[1].startswith("4") and not key.endswith(":404")
    }


@pytest.fixture
def store(make_pinecone_store: Callable[..., PineconeStore]) -> PineconeStore:
    """A store on a fresh 384-dimensional index."""
    s = make_pinecone_store()
    s.ensure_namespace(NS, 384)
    return s


def test_batch_over_2mb_is_split_into_requests_under_the_limits(
    store: PineconeStore, fake_pinecone: FakePinecone
) -> None:
    data = records(1500, 384, text_bytes=1000)
    for _ in range(2):  # a re-run is safe too
        fake_pinecone.reset_counters()
        assert store.upsert(NS, data) == 1500
        sizes = [size for size, _ in fake_pinecone.upserts]
        counts = [n for _, n in fake_pinecone.upserts]
        assert rejected(fake_pinecone) == {}
        assert sum(counts) == 1500
        assert max(sizes) <= MAX_UPSERT_BYTES
        assert max(counts) <= 1000
        # Greedy packing stays at the minimum number of requests the byte budget allows (+1).
        assert len(sizes) <= math.ceil(sum(sizes) / MAX_UPSERT_BYTES) + 1
        assert len(sizes) > 1
    assert store.count(NS) == 1500


def test_vector_count_limit_binds_for_small_vectors(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store()
    store.ensure_namespace(NS, 4)
    assert store.upsert(NS, records(2500, 4, text_bytes=10)) == 2500
    assert sorted(n for _, n in fake_pinecone.upserts) == [500, 1000, 1000]
    assert rejected(fake_pinecone) == {}
    assert store.count(NS) == 2500


def test_metadata_over_40kb_drops_the_text_not_the_record(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    looked_up: list[list[str]] = []

    def text_lookup(namespace: str, ids: Any) -> dict[str, str]:
        looked_up.append(list(ids))
        return {i: "text from postgres" for i in ids}

    store = make_pinecone_store()
    store.ensure_namespace(NS, 8)
    big, small = records(2, 8)
    big = VectorRecord(big.id, big.document_id, big.values, "y" * 50_000, big.content_hash, {})
    assert store.upsert(NS, [big, small]) == 2
    assert rejected(fake_pinecone) == {}
    held = fake_pinecone.vectors(store.config.index_name, NS)
    assert "text" not in held[big.id][1]
    assert held[small.id][1]["text"] == small.text
    assert held[big.id][1]["content_hash"] == big.content_hash
    assert store.stats["texts_dropped"] == 1
    hit = store.query(NS, big.values, top_k=1)[0]
    assert (hit.id, hit.text) == (big.id, "")  # no text source configured

    with_lookup = PineconeStore(store.config, text_lookup=text_lookup)
    try:
        hits = with_lookup.query(NS, big.values, top_k=2)
    finally:
        with_lookup.close()
    assert [(h.id, h.text) for h in hits] == [
        (big.id, "text from postgres"),
        (small.id, small.text),
    ]
    assert looked_up == [[big.id]]  # only the text that was missing


def test_metadata_too_big_even_without_text_is_a_clear_error(
    store: PineconeStore, fake_pinecone: FakePinecone
) -> None:
    (record,) = records(1, 384)
    huge = VectorRecord(
        record.id, record.document_id, record.values, "t", "h", {"notes": "z" * MAX_METADATA_BYTES}
    )
    fake_pinecone.reset_counters()
    with pytest.raises(VectorStoreError, match=r"Metadata of record 'r0' is \d+ bytes"):
        store.upsert(NS, [huge, *records(3, 384)])
    assert fake_pinecone.counters["upsert"] == 0  # nothing was sent, not even the good ones


@pytest.mark.parametrize(
    ("bad_id", "why"),
    [("é-accent", "ASCII"), ("x" * 513, "ASCII"), ("", "ASCII")],
)
def test_ids_pinecone_cannot_hold_are_refused_before_sending(
    store: PineconeStore, fake_pinecone: FakePinecone, bad_id: str, why: str
) -> None:
    (record,) = records(1, 384)
    bad = VectorRecord(bad_id, "d", record.values, "t", "h", {})
    fake_pinecone.reset_counters()
    with pytest.raises(VectorStoreError, match=why):
        store.upsert(NS, [bad])
    assert fake_pinecone.counters["upsert"] == 0


def test_metadata_values_pinecone_cannot_hold_are_refused(store: PineconeStore) -> None:
    (record,) = records(1, 384)
    for metadata in ({"nested": {"a": 1}}, {"mixed": ["a", 1]}, {"text": "reserved"}):
        bad = VectorRecord("r", "d", record.values, "t", "h", metadata)  # type: ignore[arg-type]
        with pytest.raises(VectorStoreError, match="Metadata"):
            store.upsert(NS, [bad])


def test_wrong_dimension_is_refused_before_sending(
    store: PineconeStore, fake_pinecone: FakePinecone
) -> None:
    fake_pinecone.reset_counters()
    with pytest.raises(VectorStoreError, match="do not have 384 dimensions"):
        store.upsert(NS, records(2, 384) + records(1, 383))
    with pytest.raises(VectorStoreError, match="has 384"):
        store.query(NS, [0.5] * 10, top_k=1)
    assert fake_pinecone.counters["upsert"] == fake_pinecone.counters["query"] == 0


def test_existing_index_with_other_dimension_or_metric(
    make_pinecone_store: Callable[..., PineconeStore],
) -> None:
    first = make_pinecone_store()
    first.ensure_namespace(NS, 16)
    same_index = first.config.index_name
    with pytest.raises(VectorStoreError, match="holds 16-dimensional vectors"):
        make_pinecone_store(index_name=same_index).ensure_namespace(NS, 32)
    with pytest.raises(VectorStoreError, match="'cosine' metric"):
        make_pinecone_store(index_name=same_index, metric="dotproduct").ensure_namespace(NS, 16)
    # Through the direct data-plane host (no control-plane describe) the check holds too.
    direct = make_pinecone_store(index_host=first.index.host, controller_host=None)
    with pytest.raises(VectorStoreError, match="holds 16-dimensional vectors"):
        direct.ensure_namespace(NS, 8)


def test_missing_index_without_permission_to_create(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(create_index=False)
    with pytest.raises(VectorStoreError, match="PINECONE_CREATE_INDEX=true"):
        store.ensure_namespace(NS, 8)
    assert fake_pinecone.counters["create_index"] == 0


def test_created_index_is_serverless_with_the_settings(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(cloud="gcp", region="europe-west4", metric="dotproduct")
    store.ensure_namespace(NS, 12)
    described = fake_pinecone.indexes[store.config.index_name].describe()
    assert described["deployment"] == {
        "deployment_type": "managed",
        "cloud": "gcp",
        "region": "europe-west4",
    }
    assert described["schema"]["fields"]["_values"]["dimension"] == 12
    assert described["schema"]["fields"]["_values"]["metric"] == "dotproduct"
    assert fake_pinecone.api_versions == {"2026-07"}


def test_string_ranges_must_be_iso_dates() -> None:
    with pytest.raises(VectorStoreError, match="ISO dates"):
        translate_filter({"title": {"$gte": "b"}})
    assert translate_filter({"updated_at": {"$lt": "2026-01-02"}}) == {
        "updated_at__ts": {"$lt": 1767312000.0}
    }
    assert translate_filter({"a": 1, "b": {"$in": [True]}}) == {
        "$and": [{"a": {"$eq": 1}}, {"$or": [{"b": {"$eq": True}}]}]
    }
    assert translate_filter(None) is None


def test_pack_batches_never_exceeds_limits() -> None:
    rng = np.random.default_rng(5)
    items = [
        {"id": f"i{n}", "values": [1.5] * int(rng.integers(1, 300)), "metadata": {"k": "v" * n}}
        for n in range(400)
    ]
    import orjson

    batches = pack_batches(items, "ns", max_bytes=20_000, max_vectors=7)
    assert [i for b in batches for i in b] == items  # order kept, nothing lost
    for batch in batches:
        assert len(batch) <= 7
        assert len(orjson.dumps({"vectors": batch, "namespace": "ns"})) <= 20_000
    with pytest.raises(VectorStoreError, match="alone is"):
        pack_batches([{"id": "x", "values": [1.0] * 5000}], "ns", 20_000, 10)


def test_api_key_is_never_logged(store: PineconeStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store.upsert(NS, records(3, 384))
    store.query(NS, records(1, 384)[0].values, top_k=2)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(store)
    assert API_KEY not in repr(store.config)
