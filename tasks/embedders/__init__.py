"""Embedders: one module per provider behind :class:`~tasks.embedders.base.Embedder`."""

from __future__ import annotations

from functools import lru_cache

from tasks.embedders.base import (
    Embedder,
    EmbeddingBudgetExceeded,
    EmbeddingQuotaExceeded,
    Usage,
)
from tasks.settings import LocalEmbedderConfig, OpenAIEmbedderConfig, Settings, get_settings


def make_embedder(
    config: LocalEmbedderConfig | OpenAIEmbedderConfig, settings: Settings | None = None
) -> Embedder:
    """The embedder for a provider config (request/retry knobs from ``settings``)."""
    if isinstance(config, OpenAIEmbedderConfig):
        from tasks.embedders.openai import OpenAIEmbedder, OpenAIOptions

        options = OpenAIOptions()
        if settings is not None:
            options = OpenAIOptions(
                oversize_policy=settings.openai_oversize_policy,
                max_attempts=settings.openai_max_attempts,
                max_retry_wait_s=settings.openai_max_retry_wait_s,
                max_concurrency=settings.openai_max_concurrency,
            )
        return OpenAIEmbedder(config, options)
    from tasks.embedders.local import LocalEmbedder

    return LocalEmbedder(config)


@lru_cache(maxsize=4)
def _local_embedder(config_json: str) -> Embedder:
    return make_embedder(LocalEmbedderConfig.model_validate_json(config_json))


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The configured embedder, created once per process (models load once)."""
    settings = settings or get_settings()
    config = settings.embedder_config()
    if isinstance(config, OpenAIEmbedderConfig):
        # Not cached: its SecretStr key dumps as '**********', and the client is cheap to build.
        return make_embedder(config, settings)
    return _local_embedder(config.model_dump_json())


__all__ = [
    "Embedder",
    "EmbeddingBudgetExceeded",
    "EmbeddingQuotaExceeded",
    "Usage",
    "get_embedder",
    "make_embedder",
]
