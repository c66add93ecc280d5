"""The embedder interface: texts in, unit-length vectors out, in batches.

Besides embedding, an embedder counts tokens with its model's own tokenizer (chunking and the
token budget depend on it), knows its per-input token limit, groups texts into the windows the
indexer embeds and commits one at a time, and keeps usage counters (requests, input tokens).
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.errors import EmbeddingError, PipelineError


class EmbeddingQuotaExceeded(EmbeddingError):
    """The provider says the account has no quota left (OpenAI ``insufficient_quota``)."""

    retryable = False


class EmbeddingBudgetExceeded(PipelineError):
    """A run would embed more tokens than ``MAX_TOKENS_PER_RUN`` allows; nothing was sent."""

    retryable = False


@dataclass
class Usage:
    """What an embedder has spent since it was created (or last reset)."""

    requests: int = 0
    inputs: int = 0
    input_tokens: int = 0

    def snapshot(self) -> Usage:
        """A copy (to diff before/after a run)."""
        return Usage(self.requests, self.inputs, self.input_tokens)

    def minus(self, other: Usage) -> Usage:
        """Usage since ``other`` was taken."""
        return Usage(
            self.requests - other.requests,
            self.inputs - other.inputs,
            self.input_tokens - other.input_tokens,
        )


class Embedder(ABC):
    """Turns texts into vectors. One instance per process; load models lazily."""

    #: Provider name, e.g. ``local`` or ``openai``.
    provider: str
    #: Model name as configured.
    model: str

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""

    @property
    @abstractmethod
    def batch_size(self) -> int:
        """Texts sent per model call / request."""

    @abstractmethod
    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed at most ``batch_size`` texts in one call."""

    @property
    def usage(self) -> Usage:
        """Cumulative usage counters of this instance."""
        if not hasattr(self, "_usage"):
            self._usage = Usage()
            self._usage_lock = threading.Lock()
        return self._usage

    def _count_usage(self, inputs: int, tokens: int) -> None:
        usage = self.usage
        with self._usage_lock:
            usage.requests += 1
            usage.inputs += inputs
            usage.input_tokens += tokens

    @property
    def max_input_tokens(self) -> int:
        """Longest input (in tokens) the model embeds without truncating."""
        return 512

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` with the model's tokenizer (approximate by default)."""
        return [approx_tokens(t) for t in texts]

    def windows(self, token_counts: Sequence[int]) -> list[tuple[int, int]]:
        """Contiguous ``[start, end)`` slices the indexer embeds and caches one at a time."""
        size = self.batch_size * 4
        return [(s, min(s + size, len(token_counts))) for s in range(0, len(token_counts), size)]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in batches of ``batch_size``, preserving order."""
        vectors: list[list[float]] = []
        for batch in batched(texts, self.batch_size):
            out = self._embed_batch(batch)
            if len(out) != len(batch):
                raise EmbeddingError(
                    f"{self.provider} returned {len(out)} vectors for {len(batch)} texts"
                )
            self._count_usage(len(batch), sum(self.count_tokens(batch)))
            vectors.extend(out)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return self._embed_batch([text])[0]

    def fingerprint_payload(self) -> dict[str, Any]:
        """What determines the vectors (provider, model, dimension, input handling)."""
        return {"provider": self.provider, "model": self.model, "dimension": self.dimension}

    @property
    def fingerprint(self) -> str:
        """Stable id of what produced the vectors; the embedding cache is keyed by it."""
        payload = json.dumps(self.fingerprint_payload(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def price_per_million(self, prices: dict[str, float]) -> float:
        """USD per million input tokens for this model (0 when unknown or local)."""
        return float(prices.get(self.model, 0.0))


def approx_tokens(text: str) -> int:
    """A deliberately generous token estimate: one token per 3 UTF-8 bytes, at least 1.

    Used only where no tokenizer is available (see docs/indexing.md); English BPE averages
    about 4 bytes per token, so this over-counts, which keeps request packing under limits.
    """
    return max(1, -(-len(text.encode("utf-8")) // 3))


def batched(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
