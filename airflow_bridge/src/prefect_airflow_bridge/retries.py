"""The one retry policy of every Prefect API call, sync and async (tenacity).

The hook is the only retry layer for HTTP: httpx does not retry, and the operator/trigger never
loop over a failed call themselves (Airflow's task retries come on top, and reattach to the same
Prefect run through the idempotency key).

Same rules as the product's HTTP client (``tasks/ingest/sources/http.py``, which this package cannot
import: it is installed into Airflow's environment, not Prefect's):

* connection errors and timeouts (``httpx.TransportError``) and the statuses in
  :data:`RETRYABLE_STATUS` are retried; any other 4xx fails at once;
* the delay is exponential with jitter (``backoff * 2**(n-1)``, drawn between half and all of
  it), or the server's ``Retry-After`` (delta seconds or an HTTP date) when it sends one, capped
  at ``max_wait`` either way.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Any

import httpx
import tenacity

logger = logging.getLogger(__name__)

#: Statuses worth retrying: rate limits, server errors and the CDN/proxy 52x family. Kept equal to
#: ``RETRY_STATUSES`` in ``tasks/ingest/sources/http.py``.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524})


class RetryableResponse(Exception):
    """Raised inside a retried call when the answer has a status in :data:`RETRYABLE_STATUS`."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class wait_retry_after_or_backoff(tenacity.wait.wait_base):  # noqa: N801 (tenacity's naming)
    """Retry-After when the server sent one, else exponential backoff with jitter; capped."""

    def __init__(self, backoff: float, max_wait: float) -> None:
        self.backoff = backoff
        self.max_wait = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableResponse):
            retry_after = retry_after_seconds(error.response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.backoff * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


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
        "wait": wait_retry_after_or_backoff(backoff, max_wait),
        "retry": tenacity.retry_if_exception_type((httpx.TransportError, RetryableResponse)),
        "before_sleep": _log_retry(what),
        "reraise": True,
    }


def raise_if_retryable(response: httpx.Response) -> httpx.Response:
    """Turn a retryable status into :class:`RetryableResponse` so the policy retries it."""
    if response.status_code in RETRYABLE_STATUS:
        raise RetryableResponse(response)
    return response
