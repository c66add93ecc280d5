"""The sources' HTTP session on tasks.retry's policy: what it retries, how long it waits, and that
its final error is not retried again by the Prefect task (one retry layer per call)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.ingest.sources.config import HttpOptions
from tasks.ingest.sources.http import HttpRetriesExhausted, HttpStatusError, SafeSession
from tasks.retry import is_transient
from tests.sources.servers import LocalServer, Reply


@pytest.fixture
def server() -> Iterator[LocalServer]:
    server = LocalServer().start()
    server.routes["/ok"] = lambda request: Reply(200, {"ok": True})
    yield server
    server.stop()


def session(slept: list[float], **options: float) -> SafeSession:
    values: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 10.0, "max_attempts": 4}
    values.update(timeout_s=2.0, **options)
    return SafeSession(HttpOptions(**values), allow_private=True, sleep=slept.append)


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 507, 520, 599])
def test_transient_statuses_are_retried(server: LocalServer, status: int) -> None:
    server.faults["/ok"] = [Reply(status, {"error": "later"}), Reply(status, {"error": "later"})]
    slept: list[float] = []
    assert session(slept).get(f"{server.url}/ok").json() == {"ok": True}
    assert len(server.hits("/ok")) == 3
    assert len(slept) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 501, 505])
def test_other_statuses_fail_at_once_with_the_status(server: LocalServer, status: int) -> None:
    server.faults["/ok"] = [Reply(status, {"error": "no"})]
    slept: list[float] = []
    with pytest.raises(HttpStatusError, match=f"HTTP {status}") as raised:
        session(slept).get(f"{server.url}/ok")
    assert raised.value.status == status
    assert not is_transient(raised.value)
    assert len(server.hits("/ok")) == 1 and slept == []


def test_waits_are_full_jitter_capped_and_never_below_retry_after(server: LocalServer) -> None:
    server.faults["/ok"] = [
        Reply(503, {}, headers={"Retry-After": "3"}),
        Reply(429, {}, headers={"Retry-After": "3600"}),
        Reply(500, {}),
    ]
    slept: list[float] = []
    session(slept, backoff_s=0.5, max_backoff_s=5.0).get(f"{server.url}/ok")
    assert slept[0] >= 3.0  # the server's Retry-After, although the backoff is 0.5 s
    assert slept[1] == 5.0  # its Retry-After, capped at max_backoff_s
    assert 0.0 <= slept[2] <= 2.0  # third try: full jitter under 0.5 * 2**2


def test_exhausted_retries_are_final_for_the_prefect_task(server: LocalServer) -> None:
    server.faults["/ok"] = [Reply(503, {})] * 10
    slept: list[float] = []
    with pytest.raises(HttpRetriesExhausted, match="HTTP 503 after 4 attempts") as raised:
        session(slept).get(f"{server.url}/ok?api_key=s3cret")
    assert "s3cret" not in str(raised.value)
    assert not is_transient(raised.value)  # the session was the retry layer: no second one
    assert len(server.hits("/ok")) == 4 and len(slept) == 3


def test_refused_connections_are_retried_then_final() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/ok"
    slept: list[float] = []
    with pytest.raises(HttpRetriesExhausted, match="ConnectionError after 3 attempts") as raised:
        session(slept, max_attempts=3).get(url)
    assert not is_transient(raised.value)
    assert len(slept) == 2
