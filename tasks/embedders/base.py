"""The embedder interface: texts in, unit-length vectors out, in batches."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence


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

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in batches of ``batch_size``, preserving order."""
        vectors: list[list[float]] = []
        for batch in batched(texts, self.batch_size):
            out = self._embed_batch(batch)
            if len(out) != len(batch):
                raise RuntimeError(f"{self.provider} returned {len(out)} vectors for {len(batch)} texts")
            vectors.extend(out)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return self._embed_batch([text])[0]

    @property
    def fingerprint(self) -> str:
        """Stable id of what produced the vectors (provider, model, dimension)."""
        payload = json.dumps(
            {"provider": self.provider, "model": self.model, "dimension": self.dimension},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def batched(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
