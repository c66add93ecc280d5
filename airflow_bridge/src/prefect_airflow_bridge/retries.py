"""The one retry policy of every Prefect API call, sync and async (tenacity).

The hook is the only retry layer for HTTP: httpx does not retry, and the operator/trigger never
loop over a failed call themselves (Airflow's task retries come on top, and reattach to the same
Prefect run through the idempotency key).

The same rules as the product's one policy, ``tasks/retry.py``, which this package cannot import
(it is installed into Airflow's environment, not Prefect's); the main test suite loads this file
and holds the two equal (``tests/test_retry_bridge_parity.py``):

* connection errors and timeouts (``httpx.TransportError``) and the statuses
  :func:`is_transient_status` accepts (408, 409, 425, 429, and 5xx other than 501/505) are
  retried, except 409 from the Prefect API (:data:`PREFECT_FINAL_STATUSES`); any other status
  from 400 up fails at once;
* the wait is exponential backoff with full jitter (a uniform draw between 0 and
  ``backoff * 2**(n-1)``, capped at ``max_wait``), never shorter than the server's
  ``Retry-After`` (delta seconds or an HTTP date) or ``retry-after-ms``, itself capped.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import tenacity

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


class RetryableResponse(Exception):
    """Raised inside a retried call when the answer has a transient status."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


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


class wait_backoff_or_retry_after(tenacity.wait.wait_base):  # noqa: N801 (tenacity's naming)
    """Exponential backoff with full jitter, never shorter than the server's Retry-After.

    ``backoff * 2**(attempt-1)`` capped at ``max_wait``, drawn uniformly from ``[0, that]``;
    then raised to the Retry-After of a :class:`RetryableResponse`, also capped at ``max_wait``.
    ``rng`` can be injected for tests.
    """

    def __init__(
        self, backoff: float, max_wait: float, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = backoff
        self.max_wait = max_wait
        self.rng = rng

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based) that raised ``error``."""
        ceiling = min(self.max_wait, self.base * 2.0 ** (attempt - 1))
        wait: float = ceiling * self.rng()
        if isinstance(error, RetryableResponse):
            asked = retry_after_seconds(error.response.headers)
            if asked is not None:
                wait = max(wait, min(asked, self.max_wait))
        return wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return self.backoff(retry_state.attempt_number, error)


def _log_retry(what: str) -> Any:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "Prefect API call for %s failed (%s: %s); retry %d in %.1fs",
            what,
            type(error).__name__,
            error,
            retry_state.attempt_number,
            wait,
        )

    return before_sleep


def policy(*, max_retries: int, backoff: float, max_wait: float, what: str) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying`` alike.

    The last error is re-raised as is (``reraise=True``): a ``httpx.TransportError`` or a
    :class:`RetryableResponse`, which the hook turns into its domain errors.
    """
    return {
        "stop": tenacity.stop_after_attempt(max_retries + 1),
        "wait": wait_backoff_or_retry_after(backoff, max_wait),
        "retry": tenacity.retry_if_exception_type((httpx.TransportError, RetryableResponse)),
        "before_sleep": _log_retry(what),
        "reraise": True,
    }


#: Statuses that are transient elsewhere but final from the Prefect API: it answers 409 to a
#: flow run whose parameters do not validate (and to an object that exists already), which the
#: same request can never fix. The rule above stays the shared one; this is the API's meaning.
PREFECT_FINAL_STATUSES = frozenset({409})


def raise_if_retryable(response: httpx.Response) -> httpx.Response:
    """Turn a transient status into :class:`RetryableResponse` so the policy retries it."""
    status = response.status_code
    if is_transient_status(status) and status not in PREFECT_FINAL_STATUSES:
        raise RetryableResponse(response)
    return response
