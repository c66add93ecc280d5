"""The one retry policy: which errors a retry can fix, how long to wait, and who retries.

**Exactly one retry layer per call.** Every client that talks to a server (the sources' HTTP
session, the OpenAI embedder, the Pinecone store) retries its own requests with tenacity, using
:func:`is_transient` and :class:`wait_backoff_or_retry_after` from this module, with its SDK's
own retries switched off. When that layer gives up, it raises an error marked final
(:func:`give_up`), and the Prefect task around it (:data:`NETWORK_RETRIES`) does not retry it
again: tries never multiply across layers. Prefect task retries are for what no client retried
(a dropped database connection, a crashed worker); a resumed task continues from the ledger.

**What is transient** (:func:`is_transient`):

* HTTP 408, 409, 425, 429 and 5xx other than 501/505 (the set OpenAI's and Stainless' SDKs
  retry, plus 425 Too Early); every other 4xx is a client error a retry cannot fix, and so is
  OpenAI's ``insufficient_quota``, although it arrives as a 429;
* connection errors and timeouts (any exception class named so, in requests, urllib3, httpx,
  openai and pinecone alike, and Python's own ``ConnectionError``/``TimeoutError``);
* PostgreSQL connection errors (``OperationalError``, ``InterfaceError``), not errors about the
  statement or the data;
* our own :class:`~tasks.errors.PipelineError` subclasses say so with their ``retryable`` flag.

**How long to wait** (:class:`wait_backoff_or_retry_after`): exponential backoff with full jitter
(a uniform draw between 0 and ``base * 2**(n-1)``, capped), never shorter than what the server
asked with ``Retry-After`` (delta seconds or an HTTP date) or ``retry-after-ms``, itself capped.

The Airflow bridge is a separate distribution installed into Airflow, so it cannot import this
module; ``prefect_airflow_bridge.retries`` applies the same statuses and formula, and a test
holds the two equal.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tenacity

from tasks.errors import PipelineError

if TYPE_CHECKING:  # the library stays importable without importing Prefect
    from prefect.client.schemas.objects import State, TaskRun
    from prefect.tasks import Task

logger = logging.getLogger(__name__)

#: Client-error statuses worth retrying: timeout, conflict, too early, rate limited.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
#: Server-error statuses a retry cannot fix.
PERMANENT_5XX = frozenset({501, 505})


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying (see the module doc)."""
    if status >= 500:
        return status not in PERMANENT_5XX
    return status in RETRYABLE_4XX


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, from any of the clients used here, else ``None``.

    openai: ``status_code``; requests and httpx: ``response.status_code``; pinecone: ``status``
    or ``status_code``.
    """
    response = getattr(exc, "response", None)
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(response, "status_code", None),
    ):
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def is_quota_exhausted(exc: BaseException) -> bool:
    """OpenAI's ``insufficient_quota``: a 429 that no amount of waiting fixes."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    codes = {getattr(exc, "code", None), getattr(exc, "type", None)}
    if isinstance(error, dict):
        codes |= {error.get("code"), error.get("type")}
    return "insufficient_quota" in codes or "insufficient_quota" in str(exc)


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    # requests/urllib3/httpx/openai/pinecone each define their own classes with these names.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ConnectionError",
            "ConnectTimeout",
            "ReadTimeout",
            "Timeout",
            "TimeoutError",
            "TransportError",
            "APIConnectionError",
            "APITimeoutError",
            "PineconeConnectionError",
            "PineconeTimeoutError",
            "ProtocolError",
            "RemoteDisconnected",
            "ChunkedEncodingError",
        }
    )


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can fix ``exc`` (the rules are in the module doc)."""
    if isinstance(exc, PipelineError):
        return exc.retryable
    status = status_of(exc)
    if status is not None:
        return is_transient_status(status) and not is_quota_exhausted(exc)
    if _is_connection_error(exc):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(exc, psycopg.Error):
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    # Anything else unexpected (a driver hiccup, a bug): a task retry is cheap and resumes from
    # the ledger, except for the errors that are certainly about the input.
    return not isinstance(exc, ValueError | TypeError | KeyError | FileNotFoundError)


def retry_after_seconds(
    headers: Mapping[str, Any] | None, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``Retry-After`` (delta
    seconds or an HTTP date); ``None`` when it did not ask (or asked in a form we cannot read)."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except (TypeError, ValueError):
            pass
    value = lower.get("retry-after")
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(exc: BaseException | None) -> float | None:
    """:func:`retry_after_seconds` of the headers an exception carries (its response's, or its
    own ``headers``, as pinecone's errors have), else ``None``."""
    if exc is None:
        return None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if headers is None or not hasattr(headers, "items"):
        return None
    return retry_after_seconds(headers)


class wait_backoff_or_retry_after(tenacity.wait.wait_base):  # noqa: N801 (tenacity's naming)
    """Exponential backoff with full jitter, never shorter than the server's Retry-After.

    ``base_s * 2**(attempt-1)`` capped at ``max_wait_s``, drawn uniformly from ``[0, that]``;
    then raised to the Retry-After of the failed attempt's exception, also capped at
    ``max_wait_s``. ``random`` can be injected for tests.
    """

    def __init__(
        self, base_s: float, max_wait_s: float, rng: Callable[[], float] = random.random
    ) -> None:
        self.base_s = base_s
        self.max_wait_s = max_wait_s
        self.rng = rng

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based) that raised ``error``."""
        ceiling = min(self.max_wait_s, self.base_s * 2.0 ** (attempt - 1))
        wait: float = ceiling * self.rng()
        asked = retry_after_of(error)
        if asked is not None:
            wait = max(wait, min(asked, self.max_wait_s))
        return wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return self.backoff(retry_state.attempt_number, error)


def log_before_sleep(what: str, log: logging.Logger = logger) -> Callable[[Any], None]:
    """A tenacity ``before_sleep`` hook: one warning per retry, with the error and the wait."""

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "%s failed (%s: %s), attempt %d; retrying in %.1fs",
            what,
            type(error).__name__,
            error,
            retry_state.attempt_number,
            wait,
        )

    return before_sleep


def retrying(
    what: str,
    *,
    attempts: int,
    base_s: float,
    max_wait_s: float,
    retry_on: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    log: logging.Logger = logger,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """The client-side retry layer: ``attempts`` tries in all, :func:`is_transient` errors only,
    :class:`wait_backoff_or_retry_after` between them; the last error is re-raised as is.

    ``before_sleep`` replaces the default warning (:func:`log_before_sleep`), for a client whose
    log lines must be worded or redacted its own way (the sources' HTTP session).
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=wait_backoff_or_retry_after(base_s, max_wait_s),
        retry=tenacity.retry_if_exception(retry_on),
        before_sleep=before_sleep or log_before_sleep(what, log),
        sleep=sleep,
        reraise=True,
    )


def give_up(error: PipelineError) -> PipelineError:
    """Mark ``error`` final: a client's retry layer already retried it, so the Prefect task
    around it must not (:func:`is_transient` reads the flag). Returns ``error``."""
    error.retryable = False
    return error


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry a task only when its error is transient."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BaseException) or is_transient(exc)


#: Retry options of every Prefect task that talks to the network (see the module doc).
NETWORK_RETRIES: dict[str, Any] = {
    "retries": 3,
    # Prefect's exponential_backoff(backoff_factor=2), written out to keep Prefect unimported.
    "retry_delay_seconds": [2.0, 4.0, 8.0],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
