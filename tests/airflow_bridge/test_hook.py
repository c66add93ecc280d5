"""Hook behaviour against a scripted local HTTP server: auth, retries, error mapping."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow.sdk import Connection
from prefect_airflow_bridge.exceptions import (
    PrefectApiError,
    PrefectAuthError,
    PrefectConfigurationError,
    PrefectConnectionError,
    PrefectInvalidRequestError,
    PrefectNotFoundError,
)
from prefect_airflow_bridge.hooks import PrefectHook, config_from_connection
from prefect_airflow_bridge.retries import (
    RetryableResponse,
    retry_after_seconds,
    wait_backoff_or_retry_after,
)


class Scripted:
    """A local HTTP server that answers each request with the next scripted (status, body)."""

    def __init__(self) -> None:
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body) if body else None,
                    }
                )
                status, payload, *extra = outer.script.pop(0) if outer.script else (200, {})
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    server = Scripted()
    monkeypatch.setenv(
        "AIRFLOW_CONN_PREFECT_SCRIPTED",
        json.dumps(
            {
                "conn_type": "http",
                "host": server.url,
                "login": "alice",
                "password": "s3cret",
                "extra": {"max_retries": 2, "retry_backoff": 0.01, "timeout": 5},
            }
        ),
    )
    yield server
    server.server.shutdown()


def conn(**kwargs: Any) -> Connection:
    return Connection(conn_id="c", conn_type=kwargs.pop("conn_type", "http"), **kwargs)


def test_config_basic_auth_and_derived_ui_url() -> None:
    cfg = config_from_connection(conn(host="http://prefect:4200/api", login="u", password="p"))
    assert cfg.api_url == "http://prefect:4200/api"
    assert cfg.ui_url == "http://prefect:4200"
    assert cfg.basic_auth == ("u", "p")
    assert "Authorization" not in cfg.headers


def test_config_cloud_bearer_key() -> None:
    cloud = "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    cfg = config_from_connection(conn(host=cloud, password="pnu_key"))
    assert cfg.headers["Authorization"] == "Bearer pnu_key"
    assert cfg.basic_auth is None
    assert cfg.ui_url == "https://app.prefect.cloud/account/a/workspace/w"
    explicit = config_from_connection(
        conn(
            host="https://prefect.internal/api", password="k", extra=json.dumps({"auth": "bearer"})
        )
    )
    assert explicit.headers["Authorization"] == "Bearer k"


def test_config_host_parts_and_ui_override() -> None:
    cfg = config_from_connection(
        conn(host="prefect", port=4200, extra=json.dumps({"ui_url": "https://ui.example/"}))
    )
    assert cfg.api_url == "http://prefect:4200/api"
    assert cfg.ui_url == "https://ui.example"
    assert cfg.basic_auth is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "has no host"),
        ({"host": "http://x/api", "extra": json.dumps({"auth": "bearer"})}, "no password"),
        ({"host": "http://x/api", "extra": json.dumps({"auth": "kerberos"})}, "must be 'basic'"),
        ({"host": "http://x/api", "extra": json.dumps({"timeout": "soon"})}, "must be numbers"),
    ],
)
def test_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(PrefectConfigurationError, match=match):
        config_from_connection(conn(**kwargs))


def test_sends_basic_auth_and_retries_5xx_then_succeeds(scripted: Scripted) -> None:
    scripted.script = [(503, {"detail": "busy"}), (500, {}), (200, {"id": "f1", "state": None})]
    run = PrefectHook("prefect_scripted").get_flow_run("f1")
    assert run.id == "f1"
    assert len(scripted.requests) == 3
    assert scripted.requests[0]["headers"]["Authorization"].startswith("Basic ")
    assert scripted.requests[0]["path"] == "/api/flow_runs/f1"


def test_gives_up_on_5xx_after_max_retries(scripted: Scripted) -> None:
    scripted.script = [(502, {})] * 3
    with pytest.raises(PrefectApiError, match="HTTP 502"):
        PrefectHook("prefect_scripted").get_flow_run("f1")
    assert len(scripted.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, PrefectAuthError),
        (403, PrefectAuthError),
        (404, PrefectNotFoundError),
        (409, PrefectInvalidRequestError),
        (422, PrefectInvalidRequestError),
        (400, PrefectInvalidRequestError),
    ],
)
def test_4xx_is_never_retried(scripted: Scripted, status: int, error: type[Exception]) -> None:
    scripted.script = [(status, {"detail": "nope"})]
    with pytest.raises(error, match="nope"):
        PrefectHook("prefect_scripted").get_flow_run("f1")
    assert len(scripted.requests) == 1


def test_create_flow_run_body_and_created_flag(scripted: Scripted) -> None:
    scripted.script = [(201, {"id": "r1", "state": {"type": "SCHEDULED"}}), (200, {"id": "r1"})]
    hook = PrefectHook("prefect_scripted")
    kwargs: dict[str, Any] = {"parameters": {"a": 1}, "tags": ["t"], "idempotency_key": "k"}
    assert hook.create_flow_run("dep", **kwargs)[1] is True
    assert hook.create_flow_run("dep", **kwargs)[1] is False
    sent = scripted.requests[0]
    assert sent["path"] == "/api/deployments/dep/create_flow_run"
    assert sent["json"] == {"parameters": {"a": 1}, "tags": ["t"], "idempotency_key": "k"}


def test_cancel_sends_cancelling_state(scripted: Scripted) -> None:
    scripted.script = [(201, {"status": "ACCEPT"})]
    assert PrefectHook("prefect_scripted").cancel_flow_run("r1") == "ACCEPT"
    assert scripted.requests[0]["path"] == "/api/flow_runs/r1/set_state"
    assert scripted.requests[0]["json"]["state"]["type"] == "CANCELLING"


def test_missing_deployment_says_what_to_do(scripted: Scripted) -> None:
    scripted.script = [(404, {"detail": "Deployment not found"})]
    with pytest.raises(PrefectNotFoundError, match="Deploy it first"):
        PrefectHook("prefect_scripted").get_deployment("data-pipeline/daily")


def test_connection_refused_is_clear(monkeypatch: pytest.MonkeyPatch, closed_port_url: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PREFECT_CLOSED",
        json.dumps(
            {
                "conn_type": "http",
                "host": closed_port_url,
                "extra": {"max_retries": 1, "retry_backoff": 0.01},
            }
        ),
    )
    with pytest.raises(PrefectConnectionError, match="Could not reach the Prefect API at"):
        PrefectHook("prefect_closed").get_flow_run("f1")
    ok, message = PrefectHook("prefect_closed").test_connection()
    assert not ok and "Could not reach" in message


def test_async_get_and_cancel(scripted: Scripted) -> None:
    scripted.script = [
        (503, {}),
        (200, {"id": "f1", "state": {"type": "RUNNING"}}),
        (200, {"status": "ACCEPT"}),
    ]
    hook = PrefectHook("prefect_scripted")

    async def calls() -> tuple[str | None, str]:
        return (await hook.aget_flow_run("f1")).state_type, await hook.acancel_flow_run("f1")

    assert asyncio.run(calls()) == ("RUNNING", "ACCEPT")


# -- connection form fields (provider_info conn-fields) ------------------------------------


def test_config_cloud_from_account_and_workspace_fields() -> None:
    # What the UI form stores: prefixed extra keys, empty values for untouched fields.
    extra = {
        "extra__prefect__account_id": "acc",
        "extra__prefect__workspace_id": "ws",
        "extra__prefect__ui_url": "",
        "extra__prefect__timeout": None,
    }
    cfg = config_from_connection(
        conn(conn_type="prefect", password="pnu_k", extra=json.dumps(extra))
    )
    assert cfg.api_url == "https://api.prefect.cloud/api/accounts/acc/workspaces/ws"
    assert cfg.ui_url == "https://app.prefect.cloud/account/acc/workspace/ws"
    assert cfg.headers["Authorization"] == "Bearer pnu_k"
    assert cfg.timeout == 30.0


def test_config_needs_both_account_and_workspace() -> None:
    with pytest.raises(PrefectConfigurationError, match="set both Prefect Cloud account_id"):
        config_from_connection(conn(password="k", extra=json.dumps({"account_id": "acc"})))


# -- the one retry policy (item 5) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),  # an HTTP date 60 s after "now" below
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),  # in the past: retry at once
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    now = 1445412420.0  # Wed, 21 Oct 2015 07:27:00 GMT
    assert retry_after_seconds({"Retry-After": header}, now=now) == expected


def _state(attempt: int, error: BaseException) -> Any:
    import tenacity

    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def _response(status: int, headers: dict[str, str] | None = None) -> Any:
    import httpx

    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/api"))


@pytest.mark.parametrize(
    ("attempt", "error", "low", "high"),
    [
        (1, RetryableResponse(_response(429, {"Retry-After": "4"})), 4.0, 4.0),  # never below
        (1, RetryableResponse(_response(503, {"Retry-After": "999"})), 10.0, 10.0),  # capped
        (1, RetryableResponse(_response(502)), 0.0, 1.0),  # backoff 1 s, full jitter in [0, 1]
        (3, RetryableResponse(_response(500)), 0.0, 4.0),  # 1 s doubled twice
        (6, RetryableResponse(_response(500)), 0.0, 10.0),  # capped at max_wait
    ],
)
def test_wait_honours_retry_after_else_backs_off(
    attempt: int, error: BaseException, low: float, high: float
) -> None:
    for draw in (0.0, 0.5, 1.0):
        wait = wait_backoff_or_retry_after(
            backoff=1.0, max_wait=10.0, rng=itertools.repeat(draw).__next__
        )
        assert low <= wait(_state(attempt, error)) <= high
    # Full jitter: the top of the range is the capped exponential.
    top = wait_backoff_or_retry_after(backoff=1.0, max_wait=10.0, rng=lambda: 1.0)
    assert top(_state(6, RetryableResponse(_response(500)))) == 10.0


# Parity of statuses and formula with the product's tasks/retry.py: in the main suite,
# tests/test_retry_bridge_parity.py (it loads this package's retries.py by path).


@pytest.mark.parametrize("status", [408, 425, 507, 599])
def test_transient_statuses_of_the_shared_rule_are_retried(scripted: Scripted, status: int) -> None:
    scripted.script = [(status, {}), (200, {"id": "f1", "state": None})]
    assert PrefectHook("prefect_scripted").get_flow_run("f1").id == "f1"
    assert len(scripted.requests) == 2


def _call(hook: PrefectHook, mode: str) -> Any:
    if mode == "sync":
        return hook.get_flow_run("f1")
    return asyncio.run(hook.aget_flow_run("f1"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_policy_for_sync_and_async(scripted: Scripted, mode: str) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    scripted.script = [
        (429, {}, {"Retry-After": "0"}),
        (520, {}, {"Retry-After": past}),
        (200, {"id": "f1", "state": {"type": "RUNNING"}}),
    ]
    assert _call(PrefectHook("prefect_scripted"), mode).state_type == "RUNNING"
    assert len(scripted.requests) == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_statuses_outside_the_set_are_not_retried(scripted: Scripted, mode: str) -> None:
    scripted.script = [(501, {"detail": "not implemented"})]
    with pytest.raises(PrefectApiError, match="HTTP 501"):
        _call(PrefectHook("prefect_scripted"), mode)
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retries_exhausted_report_the_last_status(scripted: Scripted, mode: str) -> None:
    scripted.script = [(503, {"detail": "busy"}, {"Retry-After": "0"})] * 3
    with pytest.raises(PrefectApiError, match="HTTP 503") as info:
        _call(PrefectHook("prefect_scripted"), mode)
    assert info.value.status_code == 503
    assert len(scripted.requests) == 3  # max_retries=2 in the scripted connection
