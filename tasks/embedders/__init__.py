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
def _cached(config_json: str, provider: str) -> Embedder:
    model = OpenAIEmbedderConfig if provider == "openai" else LocalEmbedderConfig
    return make_embedder(model.model_validate_json(config_json))


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The configured embedder, created once per process (models load once)."""
    settings = settings or get_settings()
    config = settings.embedder_config()
    if isinstance(config, OpenAIEmbedderConfig):
        # SecretStr dumps as '**********'; keep the key out of the cache key but in the config.
        return make_embedder(config, settings)
    return _cached(config.model_dump_json(), config.provider)


__all__ = [
    "Embedder",
    "EmbeddingBudgetExceeded",
    "EmbeddingQuotaExceeded",
    "Usage",
    "get_embedder",
    "make_embedder",
]
