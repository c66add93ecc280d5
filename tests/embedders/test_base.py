"""What the Embedder base class owns for every provider: request packing within the provider's
limits, windows of whole requests, counting tokens once, over-long inputs, usage."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import TypeAdapter, ValidationError

from tasks.embedders import Embedded, Embedder, EmbedderConfig, get_embedder, make_embedder
from tasks.embedders.base import OversizePolicy, approx_tokens, pack_requests
from tasks.embedders.local import LocalEmbedder
from tasks.embedders.openai import OpenAIEmbedder
from tasks.errors import EmbeddingError
from tasks.settings import LocalEmbedderConfig, OpenAIEmbedderConfig, Settings


class Scripted(Embedder):
    """A provider that declares limits and records each call; vectors from text length."""

    provider = "test"
    model = "scripted"

    def __init__(
        self,
        batch_size: int = 4,
        max_request_tokens: int | None = None,
        max_input_tokens: int = 512,
        policy: OversizePolicy = None,
        billed: int | None = None,
        drop_one: bool = False,
    ) -> None:
        self._batch_size = batch_size
        self._max_request_tokens = max_request_tokens
        self._max_input_tokens = max_input_tokens
        self._policy = policy
        self.billed = billed
        self.drop_one = drop_one
        self.calls: list[list[str]] = []
        self.counted: list[list[str]] = []

    @property
    def dimension(self) -> int:
        return 2

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def max_request_tokens(self) -> int | None:
        return self._max_request_tokens

    @property
    def max_input_tokens(self) -> int:
        return self._max_input_tokens

    @property
    def oversize_policy(self) -> OversizePolicy:
        return self._policy

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self.counted.append(list(texts))
        return super().count_tokens(texts)

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]] | Embedded:
        self.calls.append(list(texts))
        vectors = [[float(len(t)), 1.0] for t in texts][: len(texts) - self.drop_one]
        return vectors if self.billed is None else Embedded(vectors, self.billed)


@pytest.mark.parametrize(
    ("counts", "max_inputs", "max_tokens", "max_input", "expected"),
    [
        ([], 4, None, None, []),
        ([1] * 10, 4, None, None, [(0, 4), (4, 8), (8, 10)]),
        ([5, 5, 5, 5], 10, 10, None, [(0, 2), (2, 4)]),
        ([11, 1, 1], 10, 10, None, [(0, 1), (1, 3)]),  # an input over the budget goes alone
        ([100, 3, 4], 10, 10, 4, [(0, 2), (2, 3)]),  # counted as what is sent of it (4)
        ([3, 3, 3, 3, 3], 3, 7, None, [(0, 2), (2, 4), (4, 5)]),
        ([1, 1], 0, None, None, [(0, 1), (1, 2)]),  # at least one input per request
    ],
)
def test_pack_requests(
    counts: list[int],
    max_inputs: int,
    max_tokens: int | None,
    max_input: int | None,
    expected: list[tuple[int, int]],
) -> None:
    assert (
        pack_requests(
            counts, max_inputs=max_inputs, max_tokens=max_tokens, max_input_tokens=max_input
        )
        == expected
    )


def test_windows_are_whole_requests() -> None:
    embedder = Scripted(batch_size=3)
    assert embedder.windows([1] * 20) == [(0, 12), (12, 20)]  # 4 requests of 3 per window


def test_embed_packs_by_the_declared_limits_and_keeps_order() -> None:
    embedder = Scripted(batch_size=3, max_request_tokens=6)
    texts = ["aaaaaa", "bbb", "ccc", "d", "e", "f", "g"]  # 2, 1, 1, 1, 1, 1, 1 tokens
    vectors = embedder.embed(texts, token_counts=[4, 1, 1, 3, 3, 1, 1])
    assert embedder.calls == [["aaaaaa", "bbb", "ccc"], ["d", "e"], ["f", "g"]]
    assert vectors == [[float(len(t)), 1.0] for t in texts]


def test_known_token_counts_are_not_counted_again() -> None:
    embedder = Scripted()
    embedder.embed(["one", "two", "three"], token_counts=[1, 1, 2])
    embedder.embed_query("a query", token_count=2)
    assert embedder.counted == []
    assert embedder.usage.input_tokens == 6 and embedder.usage.requests == 2
    embedder.embed(["counted here"])
    assert embedder.counted == [["counted here"]]
    with pytest.raises(ValueError, match="2 token counts for 1 texts"):
        embedder.embed(["x"], token_counts=[1, 2])


def test_usage_prefers_what_the_provider_billed() -> None:
    embedder = Scripted(billed=42)
    embedder.embed(["a", "b"], token_counts=[1, 1])
    assert embedder.usage.input_tokens == 42 and embedder.usage.inputs == 2


def test_a_missing_vector_is_an_error() -> None:
    with pytest.raises(EmbeddingError, match="returned 1 vectors for 2 texts"):
        Scripted(drop_one=True).embed(["a", "b"])


@pytest.mark.parametrize(("policy", "calls"), [("truncate", 1), ("split", 3), (None, 1)])
def test_over_long_inputs_follow_the_policy(policy: OversizePolicy, calls: int) -> None:
    embedder = Scripted(max_input_tokens=4, policy=policy, batch_size=1)
    long = "x" * 30  # 10 approx tokens: 3 pieces of at most 4
    [vector] = embedder.embed([long])
    sent = [t for call in embedder.calls for t in call]
    assert len(sent) == calls
    if policy is None:
        assert sent == [long]  # the model truncates it itself
    else:
        assert all(approx_tokens(t) <= 4 for t in sent)
    assert len(vector) == 2


def test_local_embedder_declares_an_in_process_models_limits() -> None:
    embedder = LocalEmbedder(LocalEmbedderConfig(batch_size=8))
    assert embedder.max_concurrency == 1 and embedder.max_request_tokens is None
    assert embedder.oversize_policy is None  # sentence-transformers truncates by itself
    assert embedder.windows([1] * 40) == [(0, 32), (32, 40)]


def test_provider_is_selected_by_the_config_discriminator() -> None:
    configs: TypeAdapter[LocalEmbedderConfig | OpenAIEmbedderConfig] = TypeAdapter(EmbedderConfig)
    local = configs.validate_python({"provider": "local", "batch_size": 8})
    remote = configs.validate_python({"provider": "openai", "api_key": "k"})
    assert isinstance(local, LocalEmbedderConfig) and isinstance(remote, OpenAIEmbedderConfig)
    assert isinstance(make_embedder(local), LocalEmbedder)
    assert isinstance(make_embedder(remote), OpenAIEmbedder)
    with pytest.raises(ValidationError, match="provider"):
        configs.validate_python({"provider": "cohere"})
    settings = Settings(embedding_provider="local", embedding_model="all-MiniLM-L6-v2")
    assert get_embedder(settings) is get_embedder(settings)  # cached by its config
