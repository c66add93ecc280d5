"""Retry policy: which errors a retry can fix, and the Prefect task retry options built on it.

Every Prefect task that talks to the network takes :data:`NETWORK_RETRIES`; a task retry skips
errors :func:`is_transient` calls permanent (bad config, bad data, HTTP 4xx, quota exhausted, SQL
errors).
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from tasks.errors import is_retryable

#: HTTP statuses worth retrying; every other 4xx is a client error a retry cannot fix.
_RETRYABLE_HTTP = {408, 409, 425, 429}


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can help: :func:`tasks.errors.is_retryable` plus HTTP and driver rules.

    HTTP 4xx (except timeouts, conflicts and rate limits) and OpenAI's ``insufficient_quota``
    (which also arrives as 429) are permanent; 5xx are transient. PostgreSQL errors about the
    statement or the data are permanent; connection errors are transient.
    """
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        if "insufficient_quota" in str(exc):
            return False
        return status >= 500 or status in _RETRYABLE_HTTP
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return is_retryable(exc)


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition: skip retries for errors that a retry cannot fix (bad config, bad data,
    HTTP 4xx, quota exhausted, SQL errors)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BaseException) or is_transient(exc)


NETWORK_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
