"""Domain errors. Each message says what went wrong and what to do next."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors this library raises on purpose."""

    #: Retrying cannot fix these (bad config, bad data); Prefect retry conditions read this flag.
    retryable: bool = False


class ConfigError(PipelineError):
    """A setting or config file is missing or unusable."""


class WarehouseError(PipelineError):
    """PostgreSQL cannot be reached or started."""

    retryable = True


class SourceError(PipelineError):
    """A source is unreachable, malformed or empty."""


class SourceBusy(SourceError):
    """Another run holds the source's load lock (``INGEST_LOCK_WAIT_S`` ran out)."""


class TransformError(PipelineError):
    """dbt failed: a model did not build or a data test failed."""

    #: The per-node outcome (a ``tasks.transform.dbt.DbtResult``) when dbt ran at all, so a failed
    #: build still reports which nodes passed, failed and were skipped.
    result: object | None = None


class EmbedderUnavailable(PipelineError):
    """No embedding model can be loaded with the current settings."""


class EmbeddingError(PipelineError):
    """The embedding provider rejected or failed a request."""

    retryable = True


class VectorStoreError(PipelineError):
    """The vector store rejected a request (wrong dimension, bad filter, ...)."""


class MassDeleteRefused(PipelineError):
    """An index run would delete more of a namespace than INDEX_MAX_DELETE_FRACTION allows."""


class ValidationFailed(PipelineError):
    """The final validation found the index out of step with the documents."""


class SwitchGateFailed(PipelineError):
    """A rebuilt namespace scored below INDEX_SWITCH_MIN_NDCG: the serving one stays."""
