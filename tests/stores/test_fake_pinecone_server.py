"""The local Pinecone server itself, driven by the unmodified SDK: filter operators the store does
not use, metrics, limits and error shapes. (Test infrastructure must be right too.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pinecone import Pinecone
from pinecone.errors import ApiError, NotFoundError, UnauthorizedError

from tests.fakes.pinecone_server import FakePinecone
from tests.stores.conftest import API_KEY


def _create(pc: Pinecone, dimension: int, metric: str) -> Any:
    name = f"srv-{uuid.uuid4().hex[:8]}"
    model = pc.indexes.create(
        name=name,
        schema={
            "fields": {
                "_values": {"type": "dense_vector", "dimension": dimension, "metric": metric}
            }
        },
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    )
    assert model.host is not None
    return name, pc.index(host=model.host)


@pytest.fixture
def pc(fake_pinecone: FakePinecone) -> Iterator[Pinecone]:
    client = Pinecone(api_key=API_KEY, host=fake_pinecone.url)
    yield client
    client.close()


@pytest.fixture
def index(pc: Pinecone, fake_pinecone: FakePinecone) -> Iterator[Any]:
    name, idx = _create(pc, 2, "cosine")
    idx.upsert(
        vectors=[
            {"id": "a", "values": [1, 0], "metadata": {"color": "red", "n": 1, "tags": ["x"]}},
            {"id": "b", "values": [0, 1], "metadata": {"color": "blue", "n": 2}},
            {"id": "c", "values": [1, 1], "metadata": {"n": 3, "tags": ["x", "y"]}},
        ],
        namespace="ns",
    )
    yield idx
    idx.close()
    fake_pinecone.delete_index(name)


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        ({"color": {"$ne": "red"}}, {"b", "c"}),  # a missing key matches $ne
        ({"color": {"$nin": ["red", "blue"]}}, {"c"}),
        ({"color": {"$exists": True}}, {"a", "b"}),
        ({"$or": [{"color": "blue"}, {"n": {"$gte": 3}}]}, {"b", "c"}),
        ({"$and": [{"tags": "x"}, {"n": {"$lt": 3}}]}, {"a"}),
        ({"tags": {"$in": ["y"]}}, {"c"}),
        ({"n": {"$gt": 1, "$lte": 2}}, {"b"}),
    ],
)
def test_filter_language(index: Any, flt: dict[str, Any], ids: set[str]) -> None:
    result = index.query(vector=[1, 0.5], top_k=10, namespace="ns", filter=flt)
    assert {m.id for m in result.matches} == ids


def test_metrics_rank_best_first(pc: Pinecone, fake_pinecone: FakePinecone) -> None:
    vectors = [("near", [1.0, 0.0]), ("far", [10.0, 10.0]), ("mid", [2.0, 1.0])]
    expected = {
        "cosine": ["near", "mid", "far"],
        "dotproduct": ["far", "mid", "near"],
        "euclidean": ["near", "mid", "far"],
    }
    for metric, order in expected.items():
        name, idx = _create(pc, 2, metric)
        idx.upsert(vectors=vectors, namespace="m")
        result = idx.query(vector=[1.0, 0.0], top_k=3, namespace="m")
        assert [m.id for m in result.matches] == order, metric
        idx.close()
        fake_pinecone.delete_index(name)


def test_errors_have_pinecone_shapes(pc: Pinecone, index: Any, fake_pinecone: FakePinecone) -> None:
    with pytest.raises(NotFoundError):
        pc.indexes.describe("no-such-index")
    with pytest.raises(ApiError, match="Unknown filter operator"):
        index.query(vector=[1, 0], top_k=1, namespace="ns", filter={"n": {"$regex": "1"}})
    with pytest.raises(ApiError, match="numbers only"):
        index.query(vector=[1, 0], top_k=1, namespace="ns", filter={"color": {"$gt": "a"}})
    with pytest.raises(ApiError, match="exceeds the limit of 40960 bytes"):
        index.upsert(vectors=[{"id": "big", "values": [1, 0], "metadata": {"t": "z" * 41_000}}])
    with pytest.raises(ApiError, match="at least one non-zero value"):
        index.upsert(vectors=[{"id": "zero", "values": [0, 0]}], namespace="ns")
    with pytest.raises(ApiError, match="at most 1000 ids"):
        index.delete(ids=[f"i{n}" for n in range(1001)], namespace="ns")
    with pytest.raises(NotFoundError):
        index.delete(ids=["a"], namespace="missing")
    wrong_key = Pinecone(api_key="wrong", host=fake_pinecone.url)
    with pytest.raises(UnauthorizedError):
        wrong_key.indexes.list().to_list()
    wrong_key.close()
    assert fake_pinecone.counters["upsert:400"] == 2
    stats = index.describe_index_stats()
    assert stats.namespaces["ns"].vector_count == 3 and stats.dimension == 2
