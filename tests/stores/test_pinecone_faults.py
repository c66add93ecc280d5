"""Faults: rate limits, 5xx, dropped connections, slow responses and lagging stats. The store must
end with exactly the expected vectors, with a bounded number of requests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tasks.errors import VectorStoreError
from tasks.retry import is_transient
from tasks.stores.base import VectorRecord
from tasks.stores.pinecone import PineconeStore, PineconeUnavailable
from tests.fakes.pinecone_server import FakePinecone

NS = "faults"
DIM = 384


def chunks(n: int, dim: int = DIM, version: str = "v1") -> list[VectorRecord]:
    """``n`` chunk records as the indexer writes them (text and metadata included)."""
    rng = np.random.default_rng(42)
    values = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        VectorRecord(
            id=f"doc-{i}#0",
            document_id=f"doc-{i}",
            values=values[i].tolist(),
            text=f"chunk text {i} " * 8,
            content_hash=f"{version}-{i}",
            metadata={"document_id": f"doc-{i}", "chunk_position": 0, "source": "demo"},
        )
        for i in range(n)
    ]


def held_hashes(server: FakePinecone, store: PineconeStore) -> dict[str, str]:
    """What the server really holds: id -> content hash."""
    held = server.vectors(store.config.index_name, NS)
    return {vid: str(metadata["content_hash"]) for vid, (_, metadata) in held.items()}


def test_10k_chunks_under_429s_and_5xx_end_exact_with_bounded_retries(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(max_rounds=10)
    store.ensure_namespace(NS, DIM)
    data = chunks(10_000)
    expected = {r.id: r.content_hash for r in data}
    for version in ("v1", "v2"):  # the second run replaces every vector: re-runs are safe
        if version == "v2":
            data = chunks(10_000, version="v2")
            expected = {r.id: r.content_hash for r in data}
        fake_pinecone.reset_counters()
        with fake_pinecone.faulty(rate_429=0.15, rate_5xx=0.10, status_5xx=503, seed=7):
            assert store.upsert(NS, data) == 10_000
            assert store.content_hashes(NS) == expected
            assert store.count(NS) == 10_000
        assert held_hashes(fake_pinecone, store) == expected
        accepted = len(fake_pinecone.upserts)
        sent = fake_pinecone.counters["upsert"]
        assert fake_pinecone.counters["upsert:429"] > 0
        assert fake_pinecone.counters["upsert:503"] > 0
        assert (
            sent
            == accepted
            + fake_pinecone.counters["upsert:429"]
            + fake_pinecone.counters["upsert:503"]
        )
        # Bounded: with 25 % of requests failing, about 1/0.75 attempts per batch are needed;
        # allow twice that, far below the 10 rounds the budget would permit.
        assert accepted == pytest.approx(sent * 0.75, rel=0.25)
        assert sent <= 2 * accepted
        assert sum(n for _, n in fake_pinecone.upserts) == 10_000  # no batch written twice
        assert max(size for size, _ in fake_pinecone.upserts) <= 2_000_000


@pytest.mark.parametrize("after_apply", [False, True], ids=["before-write", "after-write"])
def test_dropped_connections_are_retried_idempotently(
    make_pinecone_store: Callable[..., PineconeStore],
    fake_pinecone: FakePinecone,
    after_apply: bool,
) -> None:
    store = make_pinecone_store(max_rounds=10)
    store.ensure_namespace(NS, DIM)
    data = chunks(2_000)
    with fake_pinecone.faulty(drop_fraction=0.3, drop_after_apply=after_apply, seed=3):
        store.upsert(NS, data)
        store.delete(NS, [r.id for r in data[:500]])
    assert fake_pinecone.counters["dropped"] > 0
    assert held_hashes(fake_pinecone, store) == {r.id: r.content_hash for r in data[500:]}
    assert store.count(NS) == 1_500


def test_429_storm_is_ridden_out(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(max_rounds=10)
    store.ensure_namespace(NS, DIM)
    data = chunks(1_000)
    with fake_pinecone.faulty(storm_429=25):
        store.upsert(NS, data)
    assert fake_pinecone.counters["upsert:429"] == 25
    assert held_hashes(fake_pinecone, store) == {r.id: r.content_hash for r in data}
    assert fake_pinecone.counters["upsert"] == 25 + len(fake_pinecone.upserts)


def test_slow_responses_past_the_timeout_are_retried(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(max_rounds=10, request_timeout_s=0.3, max_batch_vectors=50)
    store.ensure_namespace(NS, DIM)
    data = chunks(600)
    fake_pinecone.reset_counters()
    with fake_pinecone.faulty(
        slow_fraction=0.3, slow_seconds=0.6, only_ops=frozenset({"upsert"}), seed=5
    ):
        store.upsert(NS, data)
    # 12 batches; the slow ones timed out on the client and were sent again.
    assert fake_pinecone.counters["upsert"] > 12
    assert held_hashes(fake_pinecone, store) == {r.id: r.content_hash for r in data}
    assert store.count(NS) == 600


def test_persistent_outage_gives_up_after_bounded_attempts(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(max_rounds=2)
    store.ensure_namespace(NS, DIM)
    fake_pinecone.reset_counters()
    with (
        fake_pinecone.faulty(rate_5xx=1.0, status_5xx=503),
        pytest.raises(PineconeUnavailable, match="still failed after 2 rounds") as raised,
    ):
        store.upsert(NS, chunks(10))
    # The store is the one retry layer: one request per round (the SDK's own retries are off),
    # and its final error is not retried again by the Prefect task.
    assert fake_pinecone.counters["upsert"] == 2
    assert not is_transient(raised.value)


def test_rejected_request_is_not_retried(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    # Misconfigured above the server's limit, the store sends one oversize request: a 400 is
    # final, so it must fail at once with a clear error rather than retry.
    store = make_pinecone_store(max_request_bytes=3_000_000, max_rounds=5)
    store.ensure_namespace(NS, DIM)
    fake_pinecone.reset_counters()
    with pytest.raises(VectorStoreError, match="rejected a upsert request") as raised:
        store.upsert(NS, chunks(600))
    assert not raised.value.retryable
    assert fake_pinecone.counters["upsert:400"] == fake_pinecone.counters["upsert"]
    assert fake_pinecone.counters["upsert"] <= 2  # one request per batch, none resent


def test_count_waits_for_lagging_stats(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store()
    store.ensure_namespace(NS, DIM)
    fake_pinecone.stats_lag_reads = 3
    store.upsert(NS, chunks(300))
    # The stats answer with the old LSN for 3 reads; count() waits for this store's write.
    assert store.count(NS) == 300
    assert fake_pinecone.counters["describe_index_stats"] >= 4


def test_wait_for_count_polls_until_expected_or_times_out(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store()
    store.ensure_namespace(NS, DIM)
    store.upsert(NS, chunks(300))
    fake_pinecone.stats_lag_reads = 4
    store.delete(NS, [f"doc-{i}#0" for i in range(100)])  # deletes report no LSN
    before = fake_pinecone.counters["describe_index_stats"]
    assert store.wait_for_count(NS, 200, timeout=30) == 200
    assert fake_pinecone.counters["describe_index_stats"] - before == 5
    with pytest.raises(PineconeUnavailable, match="shows 200 vectors, expected 201"):
        store.wait_for_count(NS, 201, timeout=0.2)


def test_server_rate_limit_429s_are_absorbed(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    # The cap on waits (max_backoff_s) caps Retry-After too: let the server's "1" through.
    store = make_pinecone_store(max_rounds=10, max_batch_vectors=25, max_backoff_s=2.0)
    store.ensure_namespace(NS, 8)
    fake_pinecone.rate_limit_per_s = 20  # 40 requests at once: the bucket runs dry
    data = chunks(1_000, dim=8)
    store.upsert(NS, data)
    assert fake_pinecone.counters["upsert:429"] > 0
    assert held_hashes(fake_pinecone, store) == {r.id: r.content_hash for r in data}
    # Waiting the Retry-After each round refills the bucket: a few rounds, not ten.
    assert fake_pinecone.counters["upsert"] <= 3 * 40


def test_single_requests_are_tried_max_rounds_times_in_all(
    make_pinecone_store: Callable[..., PineconeStore], fake_pinecone: FakePinecone
) -> None:
    store = make_pinecone_store(max_rounds=3)
    store.ensure_namespace(NS, DIM)
    store.upsert(NS, chunks(5))
    fake_pinecone.reset_counters()
    with (
        fake_pinecone.faulty(rate_5xx=1.0, status_5xx=503, only_ops=frozenset({"query"})),
        pytest.raises(PineconeUnavailable, match="query failed 3 times") as raised,
    ):
        store.query(NS, chunks(1)[0].values, top_k=3)
    assert fake_pinecone.counters["query"] == 3  # no SDK retries underneath
    assert not is_transient(raised.value)
