"""The OpenAI embedder with the real ``openai`` SDK against a local OpenAI-compatible server:
request packing, over-long inputs, the single retry layer and its scripted faults, usage."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pytest

from tasks.embedders import EmbeddingQuotaExceeded, make_embedder
from tasks.embedders.base import MalformedResponse
from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions, decode_embedding
from tasks.errors import EmbeddingError
from tasks.settings import OpenAIEmbedderConfig, Settings
from tests.fakes.openai_server import FakeOpenAIServer, Fault, count_tokens, fake_vector, serve

DIMS = 8


def make(
    server: FakeOpenAIServer,
    sleeps: list[float] | None = None,
    timeout_s: float = 30.0,
    **options: Any,
) -> OpenAIEmbedder:
    """An embedder on the fake server; waits are recorded in ``sleeps`` instead of slept."""
    config = OpenAIEmbedderConfig(
        api_key="test-key", base_url=server.base_url, dimensions=DIMS, timeout_s=timeout_s
    )
    recorder = sleeps if sleeps is not None else []
    return OpenAIEmbedder(
        config, OpenAIOptions(**{"max_concurrency": 1, **options}), sleep=recorder.append
    )


def words(n: int) -> str:
    """A text of exactly ``n`` cl100k tokens."""
    return "word" + " word" * (n - 1)


# --- packing ---------------------------------------------------------------------------------


def test_packs_by_input_count(openai_server: FakeOpenAIServer) -> None:
    texts = [f"item {i}" for i in range(5000)]
    vectors = make(openai_server).embed(texts)
    assert [len(r.inputs) for r in openai_server.requests] == [2048, 2048, 904]
    assert vectors == [fake_vector(t, DIMS) for t in texts]  # order kept across requests


def test_packs_by_token_budget_with_minimum_requests(openai_server: FakeOpenAIServer) -> None:
    texts = [words(6000)] * 100 + [words(10)] * 20  # 600,200 tokens
    assert count_tokens(texts[0]) == 6000
    embedder = make(openai_server)
    embedder.embed(texts)
    sizes = [sum(count_tokens(t) for t in r.inputs) for r in openai_server.requests]
    assert all(r.outcome == "ok" for r in openai_server.requests)  # server enforces 300k
    total = sum(count_tokens(t) for t in texts)
    minimum = max(math.ceil(len(texts) / 2048), math.ceil(total / 300_000))
    assert len(sizes) == minimum == 3 and sizes == [300_000, 300_000, 200]
    assert embedder.usage.input_tokens == total and embedder.usage.requests == 3


def test_windows_keep_requests_whole(openai_server: FakeOpenAIServer) -> None:
    embedder = make(openai_server, max_concurrency=2)
    counts = [1] * 5000
    assert embedder.pack(counts) == [(0, 2048), (2048, 4096), (4096, 5000)]
    assert embedder.windows(counts) == [(0, 4096), (4096, 5000)]


@pytest.mark.parametrize(
    ("policy", "sent_tokens"),
    [("truncate", [8192]), ("split", [8192, 1808])],
)
def test_over_long_input_follows_policy(
    openai_server: FakeOpenAIServer, policy: str, sent_tokens: list[int]
) -> None:
    long = words(10_000)
    embedder = make(openai_server, oversize_policy=policy)
    [vector, short] = embedder.embed([long, "short text"])
    [request] = openai_server.requests
    assert request.outcome == "ok"
    assert [count_tokens(t) for t in request.inputs[:-1]] == sent_tokens
    assert short == fake_vector("short text", DIMS)
    if policy == "truncate":
        assert vector == fake_vector(request.inputs[0], DIMS)
    else:
        pieces = [
            np.asarray(fake_vector(t, DIMS)) * n
            for t, n in zip(request.inputs[:-1], sent_tokens, strict=True)
        ]
        expected = sum(pieces) / np.linalg.norm(sum(pieces))
        assert np.allclose(vector, expected, atol=1e-6)


def test_settings_reach_the_embedder() -> None:
    settings = Settings(
        openai_api_key="k",
        openai_oversize_policy="split",
        openai_max_attempts=3,
        openai_max_concurrency=2,
        openai_encoding_format="float",
    )
    embedder = make_embedder(settings.embedder_config(), settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.options.oversize_policy == "split"
    assert embedder.options.max_attempts == 3 and embedder.options.max_concurrency == 2
    assert embedder.options.encoding_format == "float"
    assert embedder._client.max_retries == 0  # the SDK's own retries are off


# --- the response's encoding ------------------------------------------------------------------


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_vectors_are_the_same_in_either_encoding(
    openai_server: FakeOpenAIServer, encoding_format: str
) -> None:
    """base64 (the default) is asked for and decoded to exactly the server's float32s."""
    texts = ["hello world", "semantic search", "a third text"]
    options: dict[str, Any] = (
        {} if encoding_format == "base64" else {"encoding_format": encoding_format}
    )
    vectors = make(openai_server, **options).embed(texts)
    assert [r.encoding_format for r in openai_server.requests] == [encoding_format]
    assert vectors == [fake_vector(t, DIMS) for t in texts]


def test_an_undecodable_base64_embedding_is_a_malformed_response() -> None:
    good = np.asarray([0.5, -0.25], dtype="<f4").tobytes()
    assert decode_embedding(base64.b64encode(good).decode()) == [0.5, -0.25]
    assert decode_embedding([0.5, -0.25]) == [0.5, -0.25]  # a server that sent floats anyway
    for bad in ("not base64!", base64.b64encode(good[:-1]).decode(), None, 3):
        with pytest.raises(MalformedResponse):
            decode_embedding(bad)


# --- retries and faults ------------------------------------------------------------------------


def test_429_honours_retry_after(openai_server: FakeOpenAIServer) -> None:
    sleeps: list[float] = []
    openai_server.script(Fault(status=429, retry_after="7"))
    vectors = make(openai_server, sleeps).embed(["a", "b"])
    assert [r.outcome for r in openai_server.requests] == ["429", "ok"]
    assert [len(r.inputs) for r in openai_server.requests] == [2, 2]
    assert len(sleeps) == 1 and sleeps[0] >= 7.0
    assert vectors == [fake_vector("a", DIMS), fake_vector("b", DIMS)]


def test_retry_after_ms_and_wait_cap(openai_server: FakeOpenAIServer) -> None:
    sleeps: list[float] = []
    openai_server.script(
        Fault(status=429, retry_after_ms="1500"), Fault(status=503, retry_after="900")
    )
    make(openai_server, sleeps, max_retry_wait_s=30.0).embed(["a"])
    assert [r.outcome for r in openai_server.requests] == ["429", "503", "ok"]
    assert sleeps[0] >= 1.5 and sleeps[1] == 30.0  # Retry-After honoured, capped by the setting


def test_500s_back_off_exponentially_with_jitter(openai_server: FakeOpenAIServer) -> None:
    sleeps: list[float] = []
    openai_server.script(*[Fault(status=500)] * 4)
    make(openai_server, sleeps, backoff_base_s=1.0).embed(["a"])
    assert [r.outcome for r in openai_server.requests] == ["500"] * 4 + ["ok"]
    assert len(sleeps) == 4
    assert all(0 <= s <= 2**k for k, s in enumerate(sleeps))  # full jitter under 1, 2, 4, 8 s


def test_slow_response_times_out_and_is_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Fault(delay=6.0))
    vectors = make(openai_server, timeout_s=2.0).embed(["slow"])
    assert [r.outcome for r in openai_server.requests][-1] == "ok"
    assert len(openai_server.requests) == 2
    assert vectors == [fake_vector("slow", DIMS)]


@pytest.mark.parametrize("fault", [Fault(malformed=True), Fault(wrong_count=True)])
def test_malformed_body_is_retried(openai_server: FakeOpenAIServer, fault: Fault) -> None:
    openai_server.script(fault)
    vectors = make(openai_server).embed(["x", "y"])
    assert len(openai_server.requests) == 2 and openai_server.requests[1].outcome == "ok"
    assert vectors == [fake_vector("x", DIMS), fake_vector("y", DIMS)]


def test_malformed_bodies_until_the_last_attempt_give_up_for_good(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(*[Fault(wrong_count=True)] * 3)
    with pytest.raises(EmbeddingError) as err:
        make(openai_server, max_attempts=3).embed(["x", "y"])
    assert len(openai_server.requests) == 3
    assert "failed 3 times" in str(err.value) and "expected 2 embeddings" in str(err.value)
    assert err.value.retryable is False


def test_insufficient_quota_fails_at_once(openai_server: FakeOpenAIServer) -> None:
    sleeps: list[float] = []
    openai_server.script(Fault(quota=True), Fault(quota=True))
    with pytest.raises(EmbeddingQuotaExceeded) as err:
        make(openai_server, sleeps).embed(["a"])
    assert len(openai_server.requests) == 1 and sleeps == []
    assert "insufficient_quota" in str(err.value) and "credit" in str(err.value)
    assert err.value.retryable is False


def test_gives_up_after_max_attempts_and_is_not_retried_again(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(*[Fault(status=502)] * 10)
    with pytest.raises(EmbeddingError) as err:
        make(openai_server, max_attempts=3).embed(["a"])
    assert len(openai_server.requests) == 3
    assert "502" in str(err.value) and "3 attempts" in str(err.value)
    assert err.value.retryable is False  # Prefect's task retries must not multiply ours


def test_bad_request_is_not_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Fault(status=400))
    with pytest.raises(EmbeddingError):
        make(openai_server).embed(["a"])
    assert len(openai_server.requests) == 1


def test_sdk_does_not_retry_behind_our_back(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Fault(status=429, retry_after="0"), Fault(status=429, retry_after="0"))
    with pytest.raises(EmbeddingError):
        make(openai_server, max_attempts=1).embed(["a"])
    assert len(openai_server.requests) == 1


def test_concurrency_is_bounded_and_order_kept() -> None:
    server = serve()  # its own server: slow requests of other tests may still be sleeping
    try:
        texts = [f"t{i}" for i in range(10)]
        server.script(*[Fault(delay=0.2)] * 5)
        embedder = make(server, timeout_s=30.0, max_request_inputs=2, max_concurrency=2)
        vectors = embedder.embed(texts)
        assert [len(r.inputs) for r in server.requests] == [2] * 5
        assert server.max_in_flight == 2  # concurrent, but never more than the bound
        assert vectors == [fake_vector(t, DIMS) for t in texts]
    finally:
        server.stop()


def test_any_compatible_base_url_and_usage(openai_server: FakeOpenAIServer) -> None:
    embedder = make(openai_server)
    embedder.embed(["hello world", "semantic search"])
    [request] = openai_server.requests
    assert request.model == "text-embedding-3-small" and request.dimensions == DIMS
    assert embedder.usage.inputs == 2
    assert embedder.usage.input_tokens == count_tokens("hello world") + count_tokens(
        "semantic search"
    )
