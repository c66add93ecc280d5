"""Airflow hook that talks to the Prefect REST API over HTTP (no `prefect` import).

Connection (conn type ``http`` or ``prefect``):
- host: the Prefect API URL, e.g. ``http://prefect:4200/api`` or
  ``https://api.prefect.cloud/api/accounts/<id>/workspaces/<id>``. A bare host name also works:
  then ``schema`` is the URL path (default ``api``), ``port`` the port, extra ``scheme`` the
  scheme (default ``http``).
- login/password: basic auth for a server started with
  ``PREFECT_SERVER_API_AUTH_STRING="login:password"``.
- password + extra ``{"auth": "bearer"}``: a Prefect Cloud API key (bearer is also the default
  when the host is ``api.prefect.cloud``).
- extra ``ui_url``: UI base URL for run links (default: derived from the API URL);
  ``timeout`` (seconds per HTTP call, default 30); ``max_retries`` (default 3) and
  ``retry_backoff`` (seconds, default 1, doubled each time) for connection errors, 429 and 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from airflow.sdk import BaseHook

from prefect_airflow_bridge.core import (
    FlowRun,
    flow_run_url,
    split_deployment_name,
    ui_url_from_api_url,
)
from prefect_airflow_bridge.exceptions import (
    PrefectApiError,
    PrefectAuthError,
    PrefectConfigurationError,
    PrefectConnectionError,
    PrefectFlowRunTimeout,
    PrefectInvalidRequestError,
    PrefectNotFoundError,
)

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
INVALID_REQUEST_STATUS = frozenset({400, 409, 422})
#: Longest wait honoured from a 429 ``Retry-After`` header.
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class PrefectApiConfig:
    """Everything needed to call one Prefect API, resolved from an Airflow connection."""

    conn_id: str
    api_url: str
    ui_url: str
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None
    timeout: float = 30.0
    max_retries: int = 3
    retry_backoff: float = 1.0

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
        kwargs: dict[str, Any] = {
            "base_url": self.api_url + "/",
            "headers": {"Accept": "application/json", **self.headers},
            "timeout": httpx.Timeout(self.timeout),
        }
        if self.basic_auth:
            kwargs["auth"] = httpx.BasicAuth(*self.basic_auth)
        return kwargs


def _api_url_from_connection(conn: Any) -> str:
    extra = conn.extra_dejson
    host = (conn.host or "").strip()
    if extra.get("api_url"):
        return str(extra["api_url"]).rstrip("/")
    if not host:
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}' has no host: set host to the Prefect API URL, "
            "e.g. http://prefect:4200/api (or extra api_url)."
        )
    if "://" in host:
        return host.rstrip("/")
    scheme = extra.get("scheme") or ("https" if conn.conn_type == "https" else "http")
    netloc = f"{host}:{conn.port}" if conn.port else host
    path = (conn.schema or "api").strip("/")
    return f"{scheme}://{netloc}/{path}".rstrip("/")


def config_from_connection(conn: Any) -> PrefectApiConfig:
    """Turn an Airflow ``Connection`` into a :class:`PrefectApiConfig`."""
    extra = conn.extra_dejson
    api_url = _api_url_from_connection(conn)
    auth = str(extra.get("auth") or "").lower()
    if not auth:
        if "api.prefect.cloud" in api_url:
            auth = "bearer"
        elif conn.login or conn.password:
            auth = "basic"
        else:
            auth = "none"
    headers: dict[str, str] = {}
    basic: tuple[str, str] | None = None
    if auth in {"bearer", "api_key"}:
        if not conn.password:
            raise PrefectConfigurationError(
                f"Airflow connection '{conn.conn_id}' uses bearer auth but has no password: "
                "put the Prefect Cloud API key in the password field."
            )
        headers["Authorization"] = f"Bearer {conn.password}"
    elif auth == "basic":
        basic = (conn.login or "", conn.password or "")
    elif auth != "none":
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}': extra auth must be 'basic', 'bearer' or "
            f"'none', got {auth!r}."
        )
    try:
        return PrefectApiConfig(
            conn_id=conn.conn_id,
            api_url=api_url,
            ui_url=str(extra.get("ui_url") or ui_url_from_api_url(api_url)).rstrip("/"),
            headers=headers,
            basic_auth=basic,
            timeout=float(extra.get("timeout", 30)),
            max_retries=int(extra.get("max_retries", 3)),
            retry_backoff=float(extra.get("retry_backoff", 1.0)),
        )
    except (TypeError, ValueError) as exc:
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}': extra timeout/max_retries/retry_backoff "
            f"must be numbers ({exc})."
        ) from exc


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:2000]
    return str(body)[:2000]


def _raise_for_status(response: httpx.Response, what: str, config: PrefectApiConfig) -> None:
    """Map an error response to a domain exception with advice."""
    status = response.status_code
    if status < 400:
        return
    detail = _detail(response)
    where = f"{response.request.method} {response.request.url}"
    if status in {401, 403}:
        raise PrefectAuthError(
            f"Prefect API refused {what} with HTTP {status} ({where}): {detail}. Check the "
            f"login/password (basic auth) or API key (bearer) in Airflow connection "
            f"'{config.conn_id}'.",
            status_code=status,
            detail=detail,
        )
    if status == 404:
        raise PrefectNotFoundError(
            f"Prefect API found nothing for {what} (HTTP 404, {where}): {detail}.",
            status_code=status,
            detail=detail,
        )
    if status in INVALID_REQUEST_STATUS:
        raise PrefectInvalidRequestError(
            f"Prefect API rejected {what} with HTTP {status}: {detail}. Fix the request "
            "(usually the flow parameters: names and types must match the flow signature); "
            "retrying the same request cannot succeed.",
            status_code=status,
            detail=detail,
        )
    raise PrefectApiError(
        f"Prefect API failed {what} with HTTP {status} ({where}): {detail}.",
        status_code=status,
        detail=detail,
    )


def _retry_delay(config: PrefectApiConfig, attempt: int, response: httpx.Response | None) -> float:
    delay = config.retry_backoff * (2**attempt)
    if response is not None and response.status_code == 429:
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.replace(".", "", 1).isdigit():
            delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_SECONDS))
    return delay


def _connection_error(
    config: PrefectApiConfig, what: str, exc: Exception
) -> PrefectConnectionError:
    return PrefectConnectionError(
        f"Could not reach the Prefect API at {config.api_url} for {what} after "
        f"{config.max_retries + 1} attempt(s): {type(exc).__name__}: {exc}. Check that the Prefect "
        f"server is running and reachable from Airflow, and that the host of Airflow connection "
        f"'{config.conn_id}' is the API URL (e.g. http://prefect:4200/api)."
    )


class PrefectHook(BaseHook):
    """Trigger, watch and cancel Prefect flow runs through the Prefect REST API.

    :param prefect_conn_id: Airflow connection holding the API URL and credentials.
    """

    conn_name_attr = "prefect_conn_id"
    default_conn_name = "prefect_default"
    conn_type = "http"
    hook_name = "Prefect"

    def __init__(self, prefect_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.prefect_conn_id = prefect_conn_id
        self._config: PrefectApiConfig | None = None

    # -- configuration ---------------------------------------------------------------------

    def get_config(self) -> PrefectApiConfig:
        """Resolve (once) the API URL and credentials from the Airflow connection."""
        if self._config is None:
            self._config = config_from_connection(self.get_connection(self.prefect_conn_id))
        return self._config

    async def aget_config(self) -> PrefectApiConfig:
        """Async variant of :meth:`get_config` for triggers (no blocking in the event loop)."""
        if self._config is None:
            getter = getattr(type(self), "aget_connection", None)
            if getter is not None:
                conn = await getter(self.prefect_conn_id)
            else:  # Airflow releases without BaseHook.aget_connection
                conn = await asyncio.to_thread(self.get_connection, self.prefect_conn_id)
            self._config = config_from_connection(conn)
        return self._config

    def get_conn(self) -> httpx.Client:
        """A configured ``httpx.Client``; the caller closes it."""
        return httpx.Client(**self.get_config().client_kwargs())

    def flow_run_url(self, flow_run_id: str) -> str:
        """Link to the flow run in the Prefect UI."""
        return flow_run_url(self.get_config().ui_url, flow_run_id)

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, json: Any = None) -> tuple[int, Any]:
        config = self.get_config()
        with self.get_conn() as client:
            for attempt in range(config.max_retries + 1):
                last = attempt == config.max_retries
                try:
                    response = client.request(method, path, json=json)
                except httpx.TransportError as exc:
                    if last:
                        raise _connection_error(config, what, exc) from exc
                    delay = _retry_delay(config, attempt, None)
                    logger.warning("Prefect API unreachable (%s); retry in %.1fs", exc, delay)
                    time.sleep(delay)
                    continue
                if response.status_code in RETRYABLE_STATUS and not last:
                    delay = _retry_delay(config, attempt, response)
                    logger.warning(
                        "Prefect API HTTP %s for %s; retry in %.1fs",
                        response.status_code,
                        what,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                _raise_for_status(response, what, config)
                return response.status_code, (response.json() if response.content else None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _arequest(
        self, method: str, path: str, what: str, json: Any = None
    ) -> tuple[int, Any]:
        config = await self.aget_config()
        async with httpx.AsyncClient(**config.client_kwargs()) as client:
            for attempt in range(config.max_retries + 1):
                last = attempt == config.max_retries
                try:
                    response = await client.request(method, path, json=json)
                except httpx.TransportError as exc:
                    if last:
                        raise _connection_error(config, what, exc) from exc
                    delay = _retry_delay(config, attempt, None)
                    logger.warning("Prefect API unreachable (%s); retry in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if response.status_code in RETRYABLE_STATUS and not last:
                    await asyncio.sleep(_retry_delay(config, attempt, response))
                    continue
                _raise_for_status(response, what, config)
                return response.status_code, (response.json() if response.content else None)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API -------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Used by Airflow's "Test connection" button: ``GET /health``."""
        try:
            self._request("GET", "health", "the health check")
        except Exception as exc:  # reported to the UI, not swallowed
            return False, str(exc)
        return True, f"Prefect API at {self.get_config().api_url} is healthy."

    def get_deployment(self, deployment_name: str) -> dict[str, Any]:
        """``GET /deployments/name/{flow}/{deployment}``."""
        flow, deployment = split_deployment_name(deployment_name)
        try:
            _, body = self._request(
                "GET",
                f"deployments/name/{flow}/{deployment}",
                f"deployment '{deployment_name}'",
            )
        except PrefectNotFoundError as exc:
            raise PrefectNotFoundError(
                f"Prefect deployment '{deployment_name}' does not exist at "
                f"{self.get_config().api_url}. Deploy it first (`prefect deploy` or "
                "`flow.serve`), and check the flow and deployment names.",
                status_code=404,
                detail=exc.detail,
            ) from exc
        return dict(body)

    def find_flow_runs(self, deployment_id: str, idempotency_keys: Sequence[str]) -> list[FlowRun]:
        """Flow runs of a deployment carrying any of ``idempotency_keys``."""
        body = {
            "flow_runs": {
                "deployment_id": {"any_": [deployment_id]},
                "idempotency_key": {"any_": list(idempotency_keys)},
            },
            "limit": 200,
        }
        _, runs = self._request("POST", "flow_runs/filter", "the flow run lookup", json=body)
        return [FlowRun.from_api(run) for run in runs or []]

    def create_flow_run(
        self,
        deployment_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        flow_run_name: str | None = None,
    ) -> tuple[FlowRun, bool]:
        """``POST /deployments/{id}/create_flow_run``; returns the run and whether it is new.

        With an ``idempotency_key`` Prefect returns the existing run for that key (HTTP 200)
        instead of creating another (HTTP 201), which also makes retrying this POST safe.
        """
        body: dict[str, Any] = {"parameters": dict(parameters or {}), "tags": list(tags or [])}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        if flow_run_name:
            body["name"] = flow_run_name
        status, run = self._request(
            "POST",
            f"deployments/{deployment_id}/create_flow_run",
            "creating the flow run",
            json=body,
        )
        return FlowRun.from_api(run), status == 201

    def get_flow_run(self, flow_run_id: str) -> FlowRun:
        """``GET /flow_runs/{id}``."""
        _, run = self._request("GET", f"flow_runs/{flow_run_id}", f"flow run {flow_run_id}")
        return FlowRun.from_api(run)

    async def aget_flow_run(self, flow_run_id: str) -> FlowRun:
        """Async ``GET /flow_runs/{id}``."""
        _, run = await self._arequest("GET", f"flow_runs/{flow_run_id}", f"flow run {flow_run_id}")
        return FlowRun.from_api(run)

    @staticmethod
    def _cancel_body() -> dict[str, Any]:
        # No `force`: orchestration rules must run so a Scheduled run with no infrastructure
        # goes straight to Cancelled and a running one to Cancelling (its worker/runner kills it).
        return {"state": {"type": "CANCELLING", "message": "Cancelled from Airflow."}}

    def cancel_flow_run(self, flow_run_id: str) -> str:
        """Ask Prefect to cancel a run; returns the orchestration status (ACCEPT/REJECT/...)."""
        _, result = self._request(
            "POST",
            f"flow_runs/{flow_run_id}/set_state",
            f"cancelling flow run {flow_run_id}",
            json=self._cancel_body(),
        )
        status = str((result or {}).get("status", ""))
        logger.info("Cancel requested for Prefect flow run %s: %s", flow_run_id, status)
        return status

    async def acancel_flow_run(self, flow_run_id: str) -> str:
        """Async variant of :meth:`cancel_flow_run`."""
        _, result = await self._arequest(
            "POST",
            f"flow_runs/{flow_run_id}/set_state",
            f"cancelling flow run {flow_run_id}",
            json=self._cancel_body(),
        )
        status = str((result or {}).get("status", ""))
        logger.info("Cancel requested for Prefect flow run %s: %s", flow_run_id, status)
        return status

    def wait_for_flow_run(
        self, flow_run_id: str, *, poll_interval: float, timeout: float | None
    ) -> FlowRun:
        """Poll until the run is terminal; raise :class:`PrefectFlowRunTimeout` after ``timeout``.

        Polls start at 1 s and double up to ``poll_interval`` so short runs return promptly.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(1.0, poll_interval)
        while True:
            run = self.get_flow_run(flow_run_id)
            if run.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise PrefectFlowRunTimeout(
                    f"Prefect flow run '{run.name}' ({run.id}) is still {run.state_name} after "
                    f"{timeout:.0f}s. Run URL: {self.flow_run_url(run.id)}",
                    flow_run_id=run.id,
                    state_type=run.state_type,
                    state_name=run.state_name,
                    url=self.flow_run_url(run.id),
                )
            sleep_for = delay if deadline is None else min(delay, deadline - time.monotonic())
            time.sleep(max(sleep_for, 0.0))
            delay = min(delay * 2, poll_interval)
