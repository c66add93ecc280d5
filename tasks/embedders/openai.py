"""OpenAI embeddings API (or any OpenAI-compatible ``base_url``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import openai

from tasks.embedders.base import Embedder
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


class OpenAIEmbedder(Embedder):
    """Calls ``POST /embeddings`` with up to ``batch_size`` inputs per request."""

    provider = "openai"

    def __init__(self, config: OpenAIEmbedderConfig) -> None:
        self.config = config
        self.model = config.model
        self._client = openai.OpenAI(
            api_key=config.api_key.get_secret_value(),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        self._dimension = config.dimensions or KNOWN_DIMENSIONS.get(config.model)

    @property
    def dimension(self) -> int:
        """Configured or known output size (probed once for unknown models)."""
        if self._dimension is None:
            self._dimension = len(self._embed_batch(["dimension probe"])[0])
        return self._dimension

    @property
    def batch_size(self) -> int:
        """Inputs per request, capped at the API's limit."""
        return min(self.config.batch_size, MAX_INPUTS_PER_REQUEST)

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        kwargs = {"dimensions": self.config.dimensions} if self.config.dimensions else {}
        try:
            response = self._client.embeddings.create(
                model=self.model, input=list(texts), encoding_format="float", **kwargs
            )
        except openai.AuthenticationError:
            raise EmbeddingError(
                "OpenAI rejected the API key (401): check OPENAI_API_KEY."
            ) from None
        except openai.APIStatusError as exc:
            error = EmbeddingError(
                f"Embedding request to {self._client.base_url} failed with HTTP "
                f"{exc.status_code}: {exc.message}"
            )
            error.retryable = exc.status_code == 429 or exc.status_code >= 500
            raise error from None
        except openai.APIConnectionError as exc:
            raise EmbeddingError(
                f"Cannot reach the embeddings API at {self._client.base_url}: {exc}. "
                "Check OPENAI_BASE_URL and the network."
            ) from None
        data = sorted(response.data, key=lambda d: d.index)
        return [list(d.embedding) for d in data]
