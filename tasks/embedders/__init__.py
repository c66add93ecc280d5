"""Embedders: one module per provider behind :class:`~tasks.embedders.base.Embedder`.

A provider is chosen by its config model's ``provider`` field: :data:`~tasks.settings.
EmbedderConfig` is the discriminated union of the provider configs, and pydantic selects the
config class by that field whenever a config is validated from data (as the per-process cache
below does from its JSON key).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import TypeAdapter

from tasks.embedders.base import (
    Embedded,
    Embedder,
    EmbeddingBudgetExceeded,
    EmbeddingQuotaExceeded,
    MalformedResponse,
    Usage,
)
from tasks.settings import (
    EmbedderConfig,
    LocalEmbedderConfig,
    OpenAIEmbedderConfig,
    Settings,
    get_settings,
)

#: Validates any provider's config from a dict or JSON, picking the class by ``provider``.
_CONFIGS: TypeAdapter[LocalEmbedderConfig | OpenAIEmbedderConfig] = TypeAdapter(EmbedderConfig)


def make_embedder(config: EmbedderConfig, settings: Settings | None = None) -> Embedder:
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
                encoding_format=settings.openai_encoding_format,
            )
        return OpenAIEmbedder(config, options)
    from tasks.embedders.local import LocalEmbedder

    return LocalEmbedder(config)


@lru_cache(maxsize=4)
def _cached_embedder(config_json: str) -> Embedder:
    return make_embedder(_CONFIGS.validate_json(config_json))


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The configured embedder, created once per process (models load once)."""
    settings = settings or get_settings()
    config = settings.embedder_config()
    if isinstance(config, OpenAIEmbedderConfig):
        # Not cached: its SecretStr key dumps as '**********', and the client is cheap to build.
        return make_embedder(config, settings)
    return _cached_embedder(config.model_dump_json())


__all__ = [
    "Embedded",
    "Embedder",
    "EmbedderConfig",
    "EmbeddingBudgetExceeded",
    "EmbeddingQuotaExceeded",
    "MalformedResponse",
    "Usage",
    "get_embedder",
    "make_embedder",
]
