"""The Airflow bridge's retry policy equals the product's (tasks/retry.py).

The bridge is a separate distribution installed into Airflow's environment, so it keeps its own
``retries.py``; that file needs only httpx and tenacity, so this suite loads it by path and
compares statuses, Retry-After parsing and the wait formula.
"""

from __future__ import annotations

import email.utils
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import tenacity

from tasks import retry

BRIDGE_RETRIES = (
    Path(__file__).resolve().parents[1]
    / "airflow_bridge"
    / "src"
    / "prefect_airflow_bridge"
    / "retries.py"
)


@pytest.fixture(scope="module")
def bridge() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bridge_retries_under_test", BRIDGE_RETRIES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass/typing machinery looks the module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_every_status_gets_the_same_decision(bridge: ModuleType) -> None:
    differ = [
        s for s in range(100, 600) if bridge.is_transient_status(s) != retry.is_transient_status(s)
    ]
    assert differ == []


def test_only_the_prefect_api_meaning_of_409_is_the_bridge_s_own(bridge: ModuleType) -> None:
    # The shared rule retries 409; the Prefect API answers 409 to parameters that do not validate.
    assert {409} == set(bridge.PREFECT_FINAL_STATUSES)
    request = httpx.Request("GET", "http://127.0.0.1/api")
    for status in range(100, 600):
        response = httpx.Response(status, request=request)
        try:
            bridge.raise_if_retryable(response)
            retried = False
        except bridge.RetryableResponse:
            retried = True
        assert retried == (retry.is_transient_status(status) and status != 409), status


NOW = 1_000_000.0


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "7"},
        {"retry-after": " 2.5 "},
        {"Retry-After": "-3"},
        {"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)},
        {"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)},
        {"Retry-After": "soon"},
        {"Retry-After": ""},
        {"retry-after-ms": "1500", "Retry-After": "9"},
        {"retry-after-ms": "x", "Retry-After": "4"},
        {},
        None,
    ],
)
def test_retry_after_is_read_the_same(bridge: ModuleType, headers: dict[str, str] | None) -> None:
    assert bridge.retry_after_seconds(headers, now=NOW) == retry.retry_after_seconds(
        headers, now=NOW
    )


def _failed(status: int, headers: dict[str, str] | None = None) -> Any:
    request = httpx.Request("GET", "http://127.0.0.1/api")
    return httpx.Response(status, headers=headers, request=request)


@pytest.mark.parametrize("draw", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
@pytest.mark.parametrize("headers", [None, {"Retry-After": "3"}, {"Retry-After": "999"}])
def test_same_wait_formula(
    bridge: ModuleType, draw: float, attempt: int, headers: dict[str, str] | None
) -> None:
    response = _failed(503, headers)
    theirs = bridge.wait_backoff_or_retry_after(1.0, 10.0, rng=lambda: draw)
    ours = retry.wait_backoff_or_retry_after(1.0, 10.0, rng=lambda: draw)
    status_error = httpx.HTTPStatusError("x", request=response.request, response=response)
    assert theirs.backoff(attempt, bridge.RetryableResponse(response)) == ours.backoff(
        attempt, status_error
    )
    # ... and through tenacity, as the hook uses it.
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    error = bridge.RetryableResponse(response)
    state.set_exception((type(error), error, None))
    assert theirs(state) == ours.backoff(attempt, status_error)
