"""Query length in model tokens: counted with the embedder's own public ``count_tokens``
(the local model's HF tokenizer, OpenAI's cl100k), and the count is handed on to ``embed``."""

from __future__ import annotations

import pytest

from tasks.embedders.local import LocalEmbedder
from tasks.embedders.openai import OpenAIEmbedder
from tasks.search.searcher import InvalidQuery, check_query_tokens, count_query_tokens
from tasks.settings import LocalEmbedderConfig, OpenAIEmbedderConfig
from tests.fakes.openai_server import count_tokens as cl100k_tokens


def test_local_queries_are_counted_with_the_models_tokenizer() -> None:
    embedder = LocalEmbedder(LocalEmbedderConfig())
    assert count_query_tokens(embedder, "Hello world") == 2
    assert check_query_tokens(embedder, "pan " * 10, limit=10) == 10
    with pytest.raises(InvalidQuery, match="11 tokens long; the limit is 10"):
        check_query_tokens(embedder, "pan " * 11, limit=10)


def test_openai_queries_are_counted_with_cl100k() -> None:
    embedder = OpenAIEmbedder(
        OpenAIEmbedderConfig(api_key="k", base_url="http://127.0.0.1:9/v1", dimensions=8)
    )
    query = "ultralight tent, 2-person (1.2 kg)!"
    assert count_query_tokens(embedder, query) == cl100k_tokens(query)  # no request sent
