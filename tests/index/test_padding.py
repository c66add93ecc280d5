"""Padding: the indexer feeds the local model batches of texts of nearly one length.

A model call pads every text to the longest of its batch, so the padded tokens per real token
of the batches the real local model receives is the measure (counts, not time). Documents of
very different lengths, as real pages and reviews are, in an order that mixes them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from tasks.embedders.local import LocalEmbedder
from tasks.index.run import by_length, index_documents
from tasks.settings import LocalEmbedderConfig, get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.index.helpers import SPEC, Doc, write_docs

WORDS = [
    "tent",
    "stove",
    "pack",
    "rain",
    "trail",
    "light",
    "warm",
    "dry",
    "fast",
    "quiet",
    "strong",
    "small",
]


class BatchRecorder(LocalEmbedder):
    """The real local model, recording the token length of every text of every batch."""

    def __init__(self) -> None:
        super().__init__(LocalEmbedderConfig(batch_size=16))
        self.batches: list[list[int]] = []

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.batches.append(self.count_tokens(texts))
        return super()._embed_batch(texts)


def varied_docs(count: int, seed: int = 7) -> dict[str, Doc]:
    """Documents of 3 to 180 words, shuffled so that lengths alternate."""
    rng = random.Random(seed)
    docs = {}
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.choice([3, 8, 20, 60, 120, 180]))]
        docs[f"item:{i:03d}"] = Doc(f"Item {i}", " ".join(words) + ".")
    return docs


def padding_ratio(batches: list[list[int]]) -> float:
    """Padded tokens fed to the model per real token."""
    padded = sum(max(b) * len(b) for b in batches)
    return padded / sum(sum(b) for b in batches)


@pytest.mark.parametrize(
    ("counts", "order"),
    [([3, 9, 1], [1, 0, 2]), ([5, 5, 2], [0, 1, 2]), ([], []), ([1, 2, 3, 4], [3, 2, 1, 0])],
)
def test_by_length_is_longest_first_and_stable(counts: list[int], order: list[int]) -> None:
    hashes = [f"h{i}" for i in range(len(counts))]
    texts = [f"t{i}" for i in range(len(counts))]
    assert by_length(hashes, texts, counts) == (
        [hashes[i] for i in order],
        [texts[i] for i in order],
        [counts[i] for i in order],
    )


def test_local_model_batches_hold_texts_of_one_length(env: pytest.MonkeyPatch) -> None:
    settings = get_settings().model_copy(update={"index_batch_size": 16})
    warehouse = get_warehouse(settings)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    docs = varied_docs(96)
    write_docs(warehouse.conninfo, docs)
    embedder = BatchRecorder()
    try:
        result = index_documents(SPEC, warehouse, embedder, store, settings=settings)
    finally:
        store.close()
    assert result.embedded == len(docs) == sum(len(b) for b in embedder.batches)

    # The same texts in plan order (what the indexer fed before) pad far more.
    in_plan_order = [embedder.count_tokens([f"Item {i}\n\n{d.body}"])[0] for i, d in
                     enumerate(docs.values())]  # fmt: skip
    unsorted = [in_plan_order[s : s + 16] for s in range(0, len(in_plan_order), 16)]
    assert padding_ratio(unsorted) > 1.5
    assert padding_ratio(embedder.batches) < 1.15
