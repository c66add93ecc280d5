"""Hook behaviour against a scripted local HTTP server: auth, retries, error mapping."""

from __future__ import annotations

import asyncio
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


class Scripted:
    """A local HTTP server that answers each request with the next scripted (status, body)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any]] = []
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
                status, payload = outer.script.pop(0) if outer.script else (200, {})
                data = json.dumps(payload).encode()
                self.send_response(status)
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
