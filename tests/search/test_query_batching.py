"""The search service's query batcher: concurrent queries share model calls, repeated ones are
cached, a slow model answers 504-style timeouts per query, a bad query fails alone.

Driven by real threads; the embedder is the real local model where vectors matter and a
recording embedder where only the calls matter."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from tasks.embedders.base import Embedder, approx_tokens
from tasks.search.query_batching import QueryBatcher, QueryTimeout, normalize_query
from tasks.search.searcher import check_query_tokens


def fake_vector(text: str) -> list[float]:
    """A vector that differs between texts (length and a character sum)."""
    return [float(len(text)), float(sum(map(ord, text)))]


class Recording(Embedder):
    """Vectors from text length; records each model call and can be slowed down."""

    provider = "test"
    model = "recording"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    @property
    def dimension(self) -> int:
        return 2

    @property
    def batch_size(self) -> int:
        return 64

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.gate.wait(timeout=30)
        time.sleep(self.delay_s)
        self.calls.append(list(texts))
        return [fake_vector(t) for t in texts]


def embed_all(batcher: QueryBatcher, queries: list[str]) -> list[list[float]]:
    """Embed ``queries`` from one thread each, all started together."""
    results: list[list[float] | None] = [None] * len(queries)
    start = threading.Barrier(len(queries))

    def worker(i: int) -> None:
        start.wait()
        results[i] = batcher.embed(queries[i], timeout_s=30)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("raw", "normal"), [("  tent  for\ttwo ", "tent for two"), ("a\n\nb", "a b"), ("x", "x")]
)
def test_normalize_query(raw: str, normal: str) -> None:
    assert normalize_query(raw) == normal


def test_concurrent_queries_share_model_calls() -> None:
    embedder = Recording()
    embedder.gate.clear()  # hold the model so that every query is waiting when it starts
    batcher = QueryBatcher(embedder, wait_ms=50, max_batch=32, cache_size=0)
    queries = [f"query number {i}" + "x" * i for i in range(16)]
    try:
        timer = threading.Timer(0.5, embedder.gate.set)
        timer.start()
        vectors = embed_all(batcher, queries)
    finally:
        batcher.close()
    assert vectors == [fake_vector(q) for q in queries]  # each caller gets its own
    assert sum(len(c) for c in embedder.calls) == 16
    assert len(embedder.calls) <= 2  # 16 queries, at most two model calls


def test_repeated_queries_come_from_the_cache() -> None:
    embedder = Recording()
    batcher = QueryBatcher(embedder, cache_size=8)
    try:
        first = batcher.embed("cast iron pan", timeout_s=10)
        again = batcher.embed("  cast   iron pan ", timeout_s=10)  # the same query, normalised
        other = batcher.embed("cast iron pot", timeout_s=10)
    finally:
        batcher.close()
    assert first == again and other != first
    assert embedder.calls == [["cast iron pan"], ["cast iron pot"]]
    assert batcher.cache_hits == 1


def test_a_slow_model_times_out_each_waiting_query() -> None:
    embedder = Recording()
    embedder.gate.clear()
    batcher = QueryBatcher(embedder, cache_size=0)
    try:
        with pytest.raises(QueryTimeout, match="waited more than 0.2 s"):
            batcher.embed("stuck", timeout_s=0.2)
    finally:
        embedder.gate.set()
        batcher.close()


def test_a_query_that_fails_validation_fails_alone() -> None:
    embedder = Recording()
    embedder.gate.clear()

    def validate(text: str) -> None:
        if "bad" in text:
            raise ValueError(f"refused: {text}")

    batcher = QueryBatcher(embedder, wait_ms=50, cache_size=0, validate=validate)
    errors: list[BaseException] = []
    good: list[list[float]] = []

    def run(q: str) -> None:
        try:
            good.append(batcher.embed(q, timeout_s=30))
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(q,)) for q in ("good one", "bad one")]
    for t in threads:
        t.start()
    time.sleep(0.2)
    embedder.gate.set()
    for t in threads:
        t.join(timeout=30)
    batcher.close()
    assert [str(e) for e in errors] == ["refused: bad one"]
    assert good == [fake_vector("good one")] and embedder.calls == [["good one"]]


class CountingTokens(Recording):
    """A :class:`Recording` embedder that also records every token count it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[list[str]] = []

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.counted.append(list(texts))
        return super().count_tokens(texts)


def test_each_query_is_tokenized_once() -> None:
    embedder = CountingTokens()
    batcher = QueryBatcher(
        embedder,
        wait_ms=50,
        cache_size=0,
        validate=lambda query: check_query_tokens(embedder, query, limit=100),
    )
    queries = ["tent for two", "cast iron pan", "a gift for a ten year old"]
    try:
        vectors = embed_all(batcher, queries)
    finally:
        batcher.close()
    assert vectors == [fake_vector(q) for q in queries]
    # The length check counted each query; embedding them counted nothing again.
    assert sorted(t for call in embedder.counted for t in call) == sorted(queries)
    assert embedder.usage.input_tokens == sum(approx_tokens(q) for q in queries)


def test_batched_vectors_equal_single_query_vectors_with_the_real_model(
    env: pytest.MonkeyPatch,
) -> None:
    from tasks.embedders import get_embedder
    from tasks.settings import get_settings

    embedder = get_embedder(get_settings())
    queries = ["tent for two", "cast iron pan for camping", "a gift for a ten year old", "rain"]
    alone = [embedder.embed_query(q) for q in queries]
    batcher = QueryBatcher(embedder, wait_ms=50, cache_size=0)
    try:
        together = embed_all(batcher, queries)
    finally:
        batcher.close()
    for a, b in zip(alone, together, strict=True):
        assert sum(x * y for x, y in zip(a, b, strict=True)) == pytest.approx(1.0, abs=1e-4)
