"""Airflow hook that talks to the Prefect REST API over HTTP (no `prefect` import).

Connection type ``prefect`` (registered by this package's provider info, so it has its own form in
the Airflow UI; type ``http`` works too):

- host: the Prefect API URL, e.g. ``http://prefect:4200/api`` or
  ``https://api.prefect.cloud/api/accounts/<id>/workspaces/<id>``. A bare host name also works:
  then ``schema`` is the URL path (default ``api``), ``port`` the port, extra ``scheme`` the
  scheme (default ``http``). Empty host + extra ``account_id`` and ``workspace_id``: Prefect Cloud.
- extra ``auth``: ``none``, ``basic`` (login/password, for a server started with
  ``PREFECT_SERVER_API_AUTH_STRING="login:password"``) or ``bearer`` (the password is a Prefect
  Cloud API key). Default: bearer for Prefect Cloud, basic when a login or password is set.
- extra ``ui_url``: UI base URL for run links (default: derived from the API URL);
  ``timeout`` (seconds per HTTP call, default 30); ``max_retries`` (default 3),
  ``retry_backoff`` (seconds, default 1, doubled each time) and ``retry_max_wait`` (default 30,
  also the cap on ``Retry-After``) for the retry policy in :mod:`prefect_airflow_bridge.retries`.

Where the connection comes from: the Task SDK (``BaseHook.get_connection`` /
``aget_connection``), i.e. the metadata DB through the API server in workers and the triggerer,
plus environment variables and secrets backends everywhere. See :func:`get_connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity
from airflow.sdk import BaseHook

from prefect_airflow_bridge import retries
from prefect_airflow_bridge.core import (
    FlowRun,
    PollSchedule,
    flow_run_url,
    split_deployment_name,
    ui_url_from_api_url,
)
from prefect_airflow_bridge.exceptions import (
    PrefectApiError,
    PrefectAuthError,
    PrefectBridgeError,
    PrefectConfigurationError,
    PrefectConnectionError,
    PrefectFlowRunTimeout,
    PrefectInvalidRequestError,
    PrefectNotFoundError,
)

logger = logging.getLogger(__name__)

CONN_TYPE = "prefect"
INVALID_REQUEST_STATUS = frozenset({400, 409, 422})
PREFECT_CLOUD_API = "https://api.prefect.cloud/api"


def _not_found_errors() -> tuple[type[Exception], ...]:
    from airflow.sdk.exceptions import AirflowNotFoundException as SdkNotFound

    try:
        # Re-exported there at run time for Airflow 2 code; not declared as an export.
        from airflow.exceptions import (  # type: ignore[attr-defined]
            AirflowNotFoundException as CoreNotFound,
        )
    except ImportError:  # a Task-SDK-only environment
        return (SdkNotFound,)
    return (SdkNotFound, CoreNotFound)


def _supervised() -> bool:
    """True in a Task SDK process with supervisor comms (task runner, triggerer, dag.test)."""
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _missing_connection(conn_id: str, exc: Exception) -> PrefectConfigurationError:
    return PrefectConfigurationError(
        f"Airflow connection '{conn_id}' is not defined where this code runs ({exc}). Create it "
        f"in the metadata DB (`airflow connections add {conn_id} --conn-json "
        '\'{"conn_type": "prefect", "host": "http://prefect:4200/api"}\'`), as '
        f"AIRFLOW_CONN_{conn_id.upper()} in every Airflow component, or in a secrets backend."
    )


def get_connection(conn_id: str) -> Any:
    """Resolve an Airflow connection the way Airflow 3 does where this code runs.

    In a task or the triggerer the Task SDK asks its supervisor (metadata DB through the API
    server), then environment variables and secrets backends. A plain script or CLI process has
    no supervisor, and the Task SDK then reads only the environment; there the bridge reads the
    configured secrets backends *and* the metadata DB through ``airflow.models.Connection``,
    exactly like ``airflow connections test`` does.
    """
    not_found = _not_found_errors()
    try:
        return BaseHook.get_connection(conn_id)
    except not_found as exc:
        if _supervised():
            raise _missing_connection(conn_id, exc) from exc
        try:
            from airflow.models.connection import Connection as MetastoreConnection
        except ImportError:  # Task SDK without airflow-core: nothing else to ask
            raise _missing_connection(conn_id, exc) from exc
        try:
            return MetastoreConnection.get_connection_from_secrets(conn_id)
        except not_found as db_exc:
            raise _missing_connection(conn_id, db_exc) from db_exc


async def aget_connection(conn_id: str) -> Any:
    """Async :func:`get_connection` for triggers: never blocks the triggerer's event loop.

    A miss of the async lookup is retried with the synchronous one in a worker thread before
    giving up: a supervisor without an async channel (Airflow 3.3's in-line trigger runner for
    ``dag.test()``, ``InProcessSupervisorComms``, has no ``asend``) answers only that one.
    """
    not_found = _not_found_errors()
    try:
        return await BaseHook.aget_connection(conn_id)
    except not_found:
        return await asyncio.to_thread(get_connection, conn_id)


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
    retry_max_wait: float = 30.0

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

    def retry_policy(self, what: str) -> dict[str, Any]:
        """The tenacity policy for one call (see :mod:`prefect_airflow_bridge.retries`)."""
        return retries.policy(
            max_retries=self.max_retries,
            backoff=self.retry_backoff,
            max_wait=self.retry_max_wait,
            what=what,
        )


def connection_extra(conn: Any) -> dict[str, Any]:
    """The connection's extra without empty values; the UI's ``extra__prefect__x`` keys as ``x``."""
    extra: dict[str, Any] = {}
    for key, value in (conn.extra_dejson or {}).items():
        if value is None or value == "":
            continue
        for prefix in (f"extra__{CONN_TYPE}__", "extra__http__"):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        extra[key] = value
    return extra


def _api_url_from_connection(conn: Any, extra: Mapping[str, Any]) -> str:
    host = (conn.host or "").strip()
    account, workspace = extra.get("account_id"), extra.get("workspace_id")
    if bool(account) != bool(workspace):
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}': set both Prefect Cloud account_id and "
            "workspace_id (or neither, with the full API URL as host)."
        )
    if extra.get("api_url"):
        api_url = str(extra["api_url"]).rstrip("/")
    elif not host:
        if not account:
            raise PrefectConfigurationError(
                f"Airflow connection '{conn.conn_id}' has no host: set host to the Prefect API "
                "URL, e.g. http://prefect:4200/api, or account_id and workspace_id for Prefect "
                "Cloud."
            )
        api_url = PREFECT_CLOUD_API
    elif "://" in host:
        api_url = host.rstrip("/")
    else:
        default_scheme = "https" if conn.conn_type == "https" or "prefect.cloud" in host else "http"
        scheme = extra.get("scheme") or default_scheme
        netloc = f"{host}:{conn.port}" if conn.port else host
        path = (conn.schema or "api").strip("/")
        api_url = f"{scheme}://{netloc}/{path}".rstrip("/")
    if account and "/accounts/" not in api_url:
        api_url = f"{api_url}/accounts/{account}/workspaces/{workspace}"
    return api_url


def config_from_connection(conn: Any) -> PrefectApiConfig:
    """Turn an Airflow ``Connection`` into a :class:`PrefectApiConfig`."""
    extra = connection_extra(conn)
    api_url = _api_url_from_connection(conn, extra)
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
        config = PrefectApiConfig(
            conn_id=conn.conn_id,
            api_url=api_url,
            ui_url=str(extra.get("ui_url") or ui_url_from_api_url(api_url)).rstrip("/"),
            headers=headers,
            basic_auth=basic,
            timeout=float(extra.get("timeout", 30)),
            max_retries=int(extra.get("max_retries", 3)),
            retry_backoff=float(extra.get("retry_backoff", 1.0)),
            retry_max_wait=float(extra.get("retry_max_wait", 30.0)),
        )
    except (TypeError, ValueError) as exc:
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}': extra timeout/max_retries/retry_backoff/"
            f"retry_max_wait must be numbers ({exc})."
        ) from exc
    if config.max_retries < 0 or config.timeout <= 0 or config.retry_backoff < 0:
        raise PrefectConfigurationError(
            f"Airflow connection '{conn.conn_id}': timeout must be > 0, max_retries and "
            "retry_backoff >= 0."
        )
    return config


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


def _result(response: httpx.Response, what: str, config: PrefectApiConfig) -> tuple[int, Any]:
    _raise_for_status(response, what, config)
    return response.status_code, (response.json() if response.content else None)


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

    Usable anywhere Airflow runs code: operators, triggers, TaskFlow ``@task`` functions
    (``PrefectHook().get_flow_run(run_id)``) and plain scripts.

    :param prefect_conn_id: Airflow connection holding the API URL and credentials.
    """

    conn_name_attr = "prefect_conn_id"
    default_conn_name = "prefect_default"
    conn_type = CONN_TYPE
    hook_name = "Prefect"

    def __init__(self, prefect_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.prefect_conn_id = prefect_conn_id
        self._config: PrefectApiConfig | None = None

    # -- configuration ---------------------------------------------------------------------

    def get_config(self) -> PrefectApiConfig:
        """Resolve (once) the API URL and credentials from the Airflow connection."""
        if self._config is None:
            self._config = config_from_connection(get_connection(self.prefect_conn_id))
        return self._config

    async def aget_config(self) -> PrefectApiConfig:
        """Async variant of :meth:`get_config` for triggers (no blocking in the event loop)."""
        if self._config is None:
            self._config = config_from_connection(await aget_connection(self.prefect_conn_id))
        return self._config

    def get_conn(self) -> httpx.Client:
        """A configured ``httpx.Client``; the caller closes it."""
        return httpx.Client(**self.get_config().client_kwargs())

    def flow_run_url(self, flow_run_id: str) -> str:
        """Link to the flow run in the Prefect UI."""
        return flow_run_url(self.get_config().ui_url, flow_run_id)

    # -- transport: one retry policy (retries.policy) for both -----------------------------

    def _request(self, method: str, path: str, what: str, json: Any = None) -> tuple[int, Any]:
        config = self.get_config()
        with self.get_conn() as client:
            try:
                for attempt in tenacity.Retrying(**config.retry_policy(what)):
                    with attempt:
                        response = retries.raise_if_retryable(
                            client.request(method, path, json=json)
                        )
            except httpx.TransportError as exc:
                raise _connection_error(config, what, exc) from exc
            except retries.RetryableResponse as exc:
                response = exc.response
        return _result(response, what, config)

    async def _arequest(
        self, method: str, path: str, what: str, json: Any = None
    ) -> tuple[int, Any]:
        config = await self.aget_config()
        async with httpx.AsyncClient(**config.client_kwargs()) as client:
            try:
                async for attempt in tenacity.AsyncRetrying(**config.retry_policy(what)):
                    with attempt:
                        response = retries.raise_if_retryable(
                            await client.request(method, path, json=json)
                        )
            except httpx.TransportError as exc:
                raise _connection_error(config, what, exc) from exc
            except retries.RetryableResponse as exc:
                response = exc.response
        return _result(response, what, config)

    # -- API -------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: the API answers ``/health`` and accepts the credentials.

        ``/health`` needs no credentials, so a one-row ``flows/filter`` proves the auth and (for
        Prefect Cloud) the account/workspace path too.
        """
        try:
            self._request("GET", "health", "the health check")
            self._request("POST", "flows/filter", "the credentials check", json={"limit": 1})
        except Exception as exc:  # reported to the UI, not swallowed
            return False, str(exc)
        return True, f"Prefect API at {self.get_config().api_url} is healthy and accepts us."

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

    def get_flow_run_artifacts(self, flow_run_id: str) -> dict[str, Any]:
        """The keyed artifacts a flow run created, ``{key: data}``; table data is parsed JSON.

        This is how a run reports what it did (the pipeline's ``pipeline-rows-loaded`` and
        ``pipeline-index`` tables); artifacts without a key are skipped.
        """
        body = {
            "artifacts": {"flow_run_id": {"any_": [flow_run_id]}},
            "sort": "CREATED_DESC",  # newest first: for a key written twice, the last wins
            "limit": 200,
        }
        _, artifacts = self._request(
            "POST", "artifacts/filter", f"the artifacts of flow run {flow_run_id}", json=body
        )
        result: dict[str, Any] = {}
        for artifact in artifacts or []:
            if not artifact.get("key"):
                continue
            data = artifact.get("data")
            if isinstance(data, str) and artifact.get("type") == "table":
                # A table artifact written as plain text keeps its text.
                with contextlib.suppress(ValueError):
                    data = json_module.loads(data)
            result.setdefault(str(artifact["key"]), data)
        return result

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
        self,
        flow_run_id: str,
        *,
        poll_interval: float,
        timeout: float | None,
        unreachable_timeout: float | None = None,
    ) -> FlowRun:
        """Poll until the run is terminal; raise :class:`PrefectFlowRunTimeout` after ``timeout``.

        Polls start at 1 s and double up to ``poll_interval`` so short runs return promptly.
        While the API is unreachable (after the retry policy gave up on one check) the wait goes
        on for ``unreachable_timeout`` seconds (``None``: until ``timeout``), then re-raises.
        """
        schedule = PollSchedule(
            poll_interval=poll_interval,
            deadline=None if timeout is None else time.time() + timeout,
            unreachable_timeout=unreachable_timeout,
        )
        while True:
            try:
                run = self.get_flow_run(flow_run_id)
            except PrefectBridgeError as exc:
                if not schedule.rides_out(is_transient(exc), time.time()):
                    raise
                logger.warning(
                    "Prefect API unreachable while waiting for flow run %s; still waiting: %s",
                    flow_run_id,
                    exc,
                )
            else:
                schedule.reached()
                if run.is_terminal:
                    return run
            if schedule.timed_out(time.time()):
                run = self.get_flow_run(flow_run_id)
                if run.is_terminal:
                    return run
                raise PrefectFlowRunTimeout(
                    f"Prefect flow run '{run.name}' ({run.id}) is still {run.state_name} after "
                    f"{timeout:.0f}s. Run URL: {self.flow_run_url(run.id)}",
                    flow_run_id=run.id,
                    state_type=run.state_type,
                    state_name=run.state_name,
                    url=self.flow_run_url(run.id),
                )
            time.sleep(schedule.next_sleep(time.time()))


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed later: unreachable API, or a transient status (429,
    5xx, ...: :func:`retries.is_transient_status`) after all retries."""
    if isinstance(exc, PrefectConnectionError):
        return True
    return (
        isinstance(exc, PrefectApiError)
        and type(exc) is PrefectApiError
        and exc.status_code is not None
        and retries.is_transient_status(exc.status_code)
    )
