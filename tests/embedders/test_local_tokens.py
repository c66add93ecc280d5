"""The local embedder counts tokens with its own HF tokenizer and knows its input limit."""

from __future__ import annotations

from tasks.embedders.local import LocalEmbedder
from tasks.settings import LocalEmbedderConfig


def test_counts_with_the_models_tokenizer() -> None:
    embedder = LocalEmbedder(LocalEmbedderConfig())
    texts = ["Hello world", "an ultralight tent for two", ""]
    tokenizer = embedder._model.tokenizer
    expected = [len(tokenizer.tokenize(t)) for t in texts]
    assert embedder.count_tokens(texts) == expected
    assert expected[0] == 2 and expected[2] == 0
    # 256 word pieces minus [CLS] and [SEP]: chunks are sized so the model never truncates.
    assert embedder.max_input_tokens == 254
    long = "pan " * 1000
    assert embedder.count_tokens([long]) == [1000]


def test_usage_counts_calls_and_tokens() -> None:
    embedder = LocalEmbedder(LocalEmbedderConfig(batch_size=2))
    embedder.embed(["one two", "three", "four five six"])
    assert embedder.usage.requests == 2 and embedder.usage.inputs == 3
    assert embedder.usage.input_tokens == 6
