"""Secrets never leave the sources: not in exceptions, logs, stdout/stderr, nor Prefect's database.

Canary tests: each auth type's secrets are set to values found nowhere else, then every error
path is driven against the real API server (4xx, 5xx after retries, timeouts, a refused
connection, a non-JSON body, a dlt step failure). The server's error pages echo what it was
sent (query string and Authorization header), as debugging proxies and login pages do.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.errors import SourceError
from tasks.ingest.sources.redaction import redact, register_secret
from tests.sources.conftest import OAUTH_TOKEN, TOKEN, Api, ingest, write_sources
from tests.sources.servers import Reply, Request
from tests.sources.test_rest_api import PAGINATORS, api_sources, query_key_sources


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://h/x?api_key=abc&page=2", "GET https://h/x?api_key=***&page=2"),
        ("url: /x?page=1&Access_Token=abc def", "url: /x?page=1&Access_Token=*** def"),
        (
            "https://bob:pw@h.example/x and http://tok@h/",
            "https://***@h.example/x and http://***@h/",
        ),
        ("'https://h/x?client_secret=s%20t'", "'https://h/x?client_secret=***'"),
        ("?page=1&keyboard=qwerty", "?page=1&keyboard=qwerty"),  # only whole names
        ("nothing to hide (a=b)", "nothing to hide (a=b)"),
    ],
)
def test_redact_urls(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_secret_is_masked_anywhere_also_percent_encoded() -> None:
    register_secret("s3cr3t/value+x")
    text = "x-token=s3cr3t/value+x; in a URL ?t=s3cr3t%2Fvalue%2Bx; form t=s3cr3t%2Fvalue%2Bx"
    assert "s3cr3t" not in redact(text)


#: auth type -> (the `auth:` option, the secrets it reads, the canary values (set as secrets)).
CANARIES: dict[str, tuple[str, dict[str, str]]] = {
    "bearer": ("{type: bearer}", {"TOKEN": "canary-bearer-7f3a9c"}),
    "api_key_header": (
        "{type: api_key, name: X-API-Key, location: header}",
        {"API_KEY": "canary-hdrkey-52be10"},
    ),
    "api_key_query": (
        "{type: api_key, name: api_key, location: query}",
        {"API_KEY": "canary-qrykey-c0ffee"},
    ),
    "api_key_query_custom_name": (
        "{type: api_key, name: sesame, location: query}",
        {"API_KEY": "canary-sesame-d15ea5"},
    ),
    "http_basic": (
        "{type: http_basic, username: alice}",
        {"PASSWORD": "canary-basicpw-9e1d"},
    ),
    "oauth2": (
        "{type: oauth2_client_credentials, access_token_url: TOKEN_URL}",
        {"CLIENT_ID": "canary-cid-4b2a", "CLIENT_SECRET": "canary-csecret-81f0"},
    ),
}


def _echo(request: Request) -> str:
    """What a careless error page shows: the query string and the credentials received."""
    query = "&".join(f"{k}={v}" for k, v in request.query.items())
    headers = request.headers
    return f"?{query} auth={headers.get('authorization', '')} key={headers.get('x-api-key', '')}"


def _accept_canaries(api: Api, secrets: dict[str, str]) -> None:
    """Make the API accept this test's canary credentials; its 401 page echoes the request."""
    values = set(secrets.values())
    client_id = secrets.get("CLIENT_ID", "")
    basic = {"Basic " + base64.b64encode(f"alice:{v}".encode()).decode() for v in values}
    basic |= {"Basic " + base64.b64encode(f"{client_id}:{v}".encode()).decode() for v in values}
    guarded = api.server.routes["/page_number"]  # knows only the conftest's credentials

    def page(request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not (
            auth.removeprefix("Bearer ") in values | {OAUTH_TOKEN}
            or auth in basic
            or request.headers.get("x-api-key") in values
            or values & set(request.query.values())
        ):
            return Reply(401, f"<html>denied {_echo(request)}</html>", content_type="text/html")
        headers = {**request.headers, "authorization": f"Bearer {TOKEN}"}
        return guarded(replace(request, headers=headers))

    def token(request: Request) -> Reply:
        sent = request.body.decode() + request.headers.get("authorization", "")
        if not (any(v in sent for v in values) or request.headers.get("authorization") in basic):
            return Reply(401, {"error": "invalid_client", "echo": sent})
        return Reply(body={"access_token": OAUTH_TOKEN, "expires_in": 3600})

    api.server.routes["/page_number"] = page
    api.server.routes["/token"] = token


def _hang(gate: threading.Event) -> Callable[[Request], Reply]:
    def hang(request: Request) -> Reply:
        gate.wait(10)
        return Reply(body={"data": []})

    return hang


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ERROR_PATHS = ["4xx", "5xx after retries", "timeouts", "refused", "non-JSON body", "step failure"]


@pytest.mark.parametrize("error_path", ERROR_PATHS)
@pytest.mark.parametrize("auth_type", list(CANARIES))
def test_canary_never_leaks(
    auth_type: str,
    error_path: str,
    api: Api,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth, secrets = CANARIES[auth_type]
    canaries = list(secrets.values())
    _accept_canaries(api, secrets)
    for key, value in secrets.items():
        env.setenv(f"SOURCES__SHOP__{key}", value)
    text = api_sources(
        api,
        "page_number",
        PAGINATORS["page_number"],
        auth=auth.replace("TOKEN_URL", f"{api.url}/token"),
    ).replace("max_attempts: 4", "max_attempts: 2")
    gate = threading.Event()
    echo_page = lambda r: Reply(  # noqa: E731
        200, f"<html><body>Please log in {_echo(r)}</body></html>", content_type="text/html"
    )
    if error_path == "4xx":
        wrong = {k: f"wrong-{v[::-1]}" for k, v in secrets.items()}  # not a substring
        canaries += list(wrong.values())
        for key, value in wrong.items():
            env.setenv(f"SOURCES__SHOP__{key}", value)
    elif error_path == "5xx after retries":
        api.server.faults["/page_number"] = [
            lambda r: Reply(503, f"busy {_echo(r)}", content_type="text/plain")
        ] * 2
    elif error_path == "timeouts":
        api.server.faults["/page_number"] = [_hang(gate)] * 2
        text = text.replace("timeout_s: 2", "timeout_s: 0.3")
    elif error_path == "refused":
        port = _closed_port()
        text = text.replace(f"base_url: {api.url}", f"base_url: http://127.0.0.1:{port}")
    elif error_path == "non-JSON body":
        api.server.faults["/page_number"] = [echo_page]
    elif error_path == "step failure":
        # A row whose bad value is the secret itself (a misconfigured upstream), under freeze:
        # the contract violation, raised inside dlt's extract step, quotes the value.
        api.items[2]["price"] = canaries[-1]
        text = text.replace("kind: rest_api", "kind: rest_api\n    contract: freeze")
    sources = write_sources(tmp_path, text)

    with caplog.at_level(logging.DEBUG):
        try:
            with pytest.raises(SourceError) as info:
                ingest(env, sources, "shop")
        finally:
            gate.set()
    out, err = capfd.readouterr()
    seen = {
        "exception": f"{info.value!s} {info.value!r}",
        "stdout": out,
        "stderr": err,
        "logs": "\n".join(caplog.messages) + caplog.text,
    }
    for where, text_seen in seen.items():
        for canary in canaries:
            assert canary not in text_seen, f"{auth_type}/{error_path}: canary in {where}"
    if auth_type == "http_basic":  # the echoed Authorization header carries it base64-encoded
        for canary in canaries:
            encoded = base64.b64encode(f"alice:{canary}".encode()).decode()
            assert all(encoded not in t for t in seen.values()), f"{error_path}: base64 leak"
    if error_path in ("4xx", "non-JSON body"):
        assert "***" in seen["exception"] or auth_type in ("bearer", "api_key_header", "oauth2")


def test_canary_not_in_prefect_database(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    """The issue's case, through the Prefect flow: api_key in the query and an HTTP 401."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.ingest import ingest as ingest_flow

    canary = "canary-prefect-0ddba11"
    env.setenv("SOURCES__SHOP__API_KEY", canary)
    sources = query_key_sources(tmp_path, api)
    env.setenv("SOURCES_FILE", str(sources))
    state = ingest_flow(["shop"], return_state=True)
    assert state.is_failed()
    assert [r.query.get("api_key") for r in api.server.hits("/page_number")] == [canary]

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None

    async def stored() -> list[str]:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            assert run.state is not None
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
            tasks = await client.read_task_runs()
            texts = [log.message for log in logs] + [str(run.state.message), str(run.parameters)]
            texts += [str(t.state.message) for t in tasks if t.flow_run_id == run.id and t.state]
            return texts

    texts = asyncio.run(stored())
    assert any("HTTP 401" in t for t in texts)  # the error did reach Prefect
    assert not [t for t in texts if canary in t]
    assert any("api_key=***" in t for t in texts)
