"""pgvector query depth on a real HNSW index: filtered queries still return ``top_k`` and match
exact search; ``hnsw.ef_search`` follows the depth asked (real embedded PostgreSQL).

3,000 vectors in loose clusters (so neighbourhoods exist, as with sentence embeddings), 1% of
them tagged ``shard: rare``: a filter that rejects 99% of what the HNSW graph walks through.
Exact answers are computed here in numpy, independently of Postgres. The planner is kept off
sequential scans (a table this small would not need the index) so the HNSW path is what runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from psycopg import sql

from tasks.stores.base import VectorRecord
from tasks.stores.pgvector import PgVectorStore, scan_settings

pytestmark = pytest.mark.integration

ROWS, DIM, NAMESPACE = 3000, 48, "recall"
RARE = {f"doc-{i}" for i in range(0, ROWS, 100)}  # 30 documents


def vectors() -> np.ndarray:
    """Unit vectors around 60 random centres."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((60, DIM))
    v = centres[rng.integers(0, 60, ROWS)] + 0.8 * rng.standard_normal((ROWS, DIM))
    unit: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return unit


@pytest.fixture
def loaded(env: pytest.MonkeyPatch) -> Iterator[tuple[PgVectorStore, np.ndarray]]:
    """A store whose namespace holds the vectors, with the store's own HNSW index."""
    from tasks.settings import get_settings
    from tasks.warehouse import get_warehouse

    settings = get_settings()
    store = PgVectorStore(get_warehouse(settings), schema=settings.vector_schema)
    data = vectors()
    store.ensure_namespace(NAMESPACE, DIM)
    store.upsert(
        NAMESPACE,
        [
            VectorRecord(
                id=f"doc-{i}#0",
                document_id=f"doc-{i}",
                values=data[i].tolist(),
                text=f"text {i}",
                content_hash="h",
                metadata={"shard": "rare" if f"doc-{i}" in RARE else "common"},
            )
            for i in range(ROWS)
        ],
    )
    store.conn.execute(
        sql.SQL("analyze {}.{}").format(sql.Identifier(store.schema), sql.Identifier(NAMESPACE))
    )
    # On 3,000 rows the planner rightly prefers reading the 30 filtered rows and sorting them;
    # the index path is what large namespaces take, so make this connection take it too.
    store.conn.execute("set enable_seqscan = off")
    yield store, data
    store.close()


def exact(data: np.ndarray, query: np.ndarray, k: int, only: set[str] | None = None) -> list[str]:
    """The ``k`` nearest chunk ids by cosine, computed here."""
    order = np.argsort(-(data @ query), kind="stable")
    ids = [f"doc-{i}#0" for i in order if only is None or f"doc-{i}" in only]
    return ids[:k]


def queries(data: np.ndarray, n: int = 20) -> list[np.ndarray]:
    """Queries near stored vectors (a vector plus noise)."""
    rng = np.random.default_rng(11)
    picks = data[rng.choice(ROWS, n, replace=False)] + 0.3 * rng.standard_normal((n, DIM))
    return [q / np.linalg.norm(q) for q in picks.astype(np.float32)]


def test_the_plan_walks_the_hnsw_index(loaded: tuple[PgVectorStore, np.ndarray]) -> None:
    store, data = loaded
    plan = store.conn.execute(
        sql.SQL(
            "explain select id from {}.{} where metadata @> %s::jsonb "
            "order by embedding <=> %s limit 10"
        ).format(sql.Identifier(store.schema), sql.Identifier(NAMESPACE)),
        ('{"shard": "rare"}', data[0]),
    ).fetchall()
    assert any("hnsw" in str(row[0]) for row in plan), plan


@pytest.mark.parametrize("top_k", [10, 30])
def test_selective_filter_returns_top_k_and_matches_exact(
    loaded: tuple[PgVectorStore, np.ndarray], top_k: int
) -> None:
    store, data = loaded
    for q in queries(data):
        hits = store.query(NAMESPACE, q.tolist(), top_k, {"shard": "rare"})
        assert len(hits) == top_k
        assert [h.id for h in hits] == exact(data, q, top_k, RARE)
        assert all(h.metadata["shard"] == "rare" for h in hits)


def test_a_filter_matching_fewer_rows_than_top_k_returns_them_all(
    loaded: tuple[PgVectorStore, np.ndarray],
) -> None:
    store, data = loaded
    hits = store.query(NAMESPACE, queries(data, 1)[0].tolist(), 50, {"shard": "rare"})
    assert sorted(h.id for h in hits) == sorted(f"{d}#0" for d in RARE)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_deep_queries_keep_recall(loaded: tuple[PgVectorStore, np.ndarray]) -> None:
    """Depth 200 (five times pgvector's default ef_search): ef_search follows it."""
    store, data = loaded
    assert scan_settings(200)["hnsw.ef_search"] == "400"
    assert scan_settings(5)["hnsw.ef_search"] == "40"
    assert scan_settings(5000)["hnsw.ef_search"] == "1000"
    overlap = []
    for q in queries(data):
        hits = store.query(NAMESPACE, q.tolist(), 200)
        assert len(hits) == 200
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        overlap.append(len({h.id for h in hits} & set(exact(data, q, 200))) / 200)
    assert float(np.mean(overlap)) >= 0.98
