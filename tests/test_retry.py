"""The one retry policy (tasks/retry.py): statuses, Retry-After, backoff, one layer per call."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import httpx2
import openai
import psycopg
import pytest
import requests
import tenacity

from tasks.errors import EmbeddingError, PipelineError
from tasks.retry import (
    give_up,
    is_transient,
    is_transient_status,
    retry_after_of,
    retry_after_seconds,
    retrying,
    status_of,
    wait_backoff_or_retry_after,
)


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (200, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (422, False),
        (425, True),
        (429, True),
        (500, True),
        (501, False),
        (502, True),
        (503, True),
        (505, False),
        (524, True),
    ],
)
def test_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


def _requests_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"HTTP {status}", response=response)


def _openai_error(status: int, body: Any = None) -> openai.APIStatusError:
    # openai's own HTTP client (httpx2), as its errors carry it.
    request = httpx2.Request("POST", "http://127.0.0.1/v1/embeddings")
    response = httpx2.Response(status, request=request, headers={"retry-after": "3"})
    return openai.APIStatusError("failed", response=response, body=body)


def test_every_client_error_shape_is_judged_by_its_status() -> None:
    assert is_transient(_requests_error(503))
    assert not is_transient(_requests_error(404))
    assert is_transient(_openai_error(429))
    assert not is_transient(_openai_error(400))
    request = httpx.Request("GET", "http://127.0.0.1/")
    status_error = httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(502, request=request)
    )
    assert is_transient(status_error)


def test_insufficient_quota_is_permanent_although_it_is_a_429() -> None:
    body = {"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}
    assert not is_transient(_openai_error(429, body))


def test_connection_errors_and_timeouts_are_transient() -> None:
    assert is_transient(requests.ConnectionError("refused"))
    assert is_transient(requests.ReadTimeout("slow"))
    assert is_transient(httpx.ConnectTimeout("slow"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())


def test_database_errors_split_into_connection_and_statement() -> None:
    assert is_transient(psycopg.OperationalError("server closed the connection"))
    assert not is_transient(psycopg.errors.UndefinedTable("no such table"))


def test_our_errors_carry_their_own_flag_and_give_up_makes_them_final() -> None:
    assert not is_transient(PipelineError("bad config"))
    error = EmbeddingError("provider down")
    assert is_transient(error)
    assert give_up(error) is error
    assert not is_transient(error)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=1_000_000.0) == pytest.approx(30.0)
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None


def test_wait_is_full_jitter_capped_and_never_below_retry_after() -> None:
    wait = wait_backoff_or_retry_after(base_s=1.0, max_wait_s=10.0, rng=lambda: 1.0)
    assert [wait.backoff(n, None) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert wait_backoff_or_retry_after(1.0, 10.0, rng=lambda: 0.0).backoff(3, None) == 0.0
    # The server asked for 3 s: never less, even when the jitter draws 0.
    low = wait_backoff_or_retry_after(1.0, 10.0, rng=lambda: 0.0)
    assert low.backoff(1, _openai_error(429)) == 3.0
    # ... and never more than the cap.
    assert (
        wait_backoff_or_retry_after(1.0, 2.0, rng=lambda: 0.0).backoff(1, _openai_error(429)) == 2.0
    )


def test_retrying_tries_transient_errors_only_and_reraises_the_last() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("refused")
        return "ok"

    policy = retrying("test call", attempts=4, base_s=0.5, max_wait_s=1.0, sleep=slept.append)
    assert policy(flaky) == "ok"
    assert len(calls) == 3 and len(slept) == 2

    permanent: list[int] = []

    def bad_request() -> None:
        permanent.append(1)
        raise _requests_error(400)

    with pytest.raises(requests.HTTPError):
        retrying("test call", attempts=4, base_s=0.5, max_wait_s=1.0, sleep=slept.append)(
            bad_request
        )
    assert permanent == [1]


def test_pinecone_error_shapes_are_read_too() -> None:
    from pinecone.errors import (
        NotFoundError,
        PineconeConnectionError,
        PineconeTimeoutError,
        RateLimitError,
        ServiceError,
    )

    limited = RateLimitError(
        message="slow down", status_code=429, headers={"retry-after": "4"}, retry_after=4.0
    )
    assert status_of(limited) == 429 and is_transient(limited)
    assert retry_after_of(limited) == 4.0
    assert is_transient(ServiceError(message="busy", status_code=503, headers={}))
    assert not is_transient(ServiceError(message="no", status_code=501, headers={}))
    assert not is_transient(NotFoundError(message="gone", status_code=404, headers={}))
    assert is_transient(PineconeConnectionError("refused"))
    assert is_transient(PineconeTimeoutError("slow"))


def test_retrying_takes_a_client_s_own_log_hook() -> None:
    seen: list[tuple[int, float]] = []

    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.next_action is not None
        seen.append((state.attempt_number, state.next_action.sleep))

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise TimeoutError()
        return "ok"

    policy = retrying(
        "x", attempts=3, base_s=0.0, max_wait_s=0.0, sleep=lambda _: None, before_sleep=before_sleep
    )
    assert policy(flaky) == "ok"
    assert seen == [(1, 0.0)]
