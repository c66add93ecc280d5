"""Pure logic shared by the hook, operator and trigger: no I/O, no Airflow imports.

Kept apart so the rules that matter most (idempotency keys, which run a retry reattaches to,
what counts as terminal, how run URLs are built) are plain functions with table-driven tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prefect_airflow_bridge.exceptions import PrefectConfigurationError

#: Prefect state types after which a flow run never changes again on its own.
TERMINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
#: Terminal state types that fail the Airflow task. Prefect's flow timeout ends a run as type
#: FAILED with name "TimedOut", so it is covered here.
UNSUCCESSFUL_STATE_TYPES = frozenset({"FAILED", "CRASHED", "CANCELLED"})

_CLOUD_API = re.compile(
    r"^(?P<scheme>https?)://api\.(?P<domain>[^/]+)/api/accounts/(?P<account>[^/]+)"
    r"/workspaces/(?P<workspace>[^/]+)/?$"
)


@dataclass(frozen=True)
class FlowRun:
    """The few fields of a Prefect flow run that the bridge needs."""

    id: str
    name: str
    state_type: str | None
    state_name: str | None
    state_message: str | None
    idempotency_key: str | None
    parameters: dict[str, Any]
    tags: list[str]

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> FlowRun:
        """Build from a `GET /flow_runs/{id}` (or create/filter) JSON object."""
        state = payload.get("state") or {}
        return cls(
            id=str(payload["id"]),
            name=str(payload.get("name") or ""),
            state_type=state.get("type") or payload.get("state_type"),
            state_name=state.get("name") or payload.get("state_name"),
            state_message=state.get("message"),
            idempotency_key=payload.get("idempotency_key"),
            parameters=dict(payload.get("parameters") or {}),
            tags=list(payload.get("tags") or []),
        )

    @property
    def is_terminal(self) -> bool:
        """True once the run is Completed, Failed, Crashed or Cancelled."""
        return self.state_type in TERMINAL_STATE_TYPES

    @property
    def is_unsuccessful(self) -> bool:
        """True if the run ended Failed (incl. TimedOut), Crashed or Cancelled."""
        return self.state_type in UNSUCCESSFUL_STATE_TYPES

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form used in trigger events and XCom."""
        return {
            "id": self.id,
            "name": self.name,
            "state": {
                "type": self.state_type,
                "name": self.state_name,
                "message": self.state_message,
            },
            "idempotency_key": self.idempotency_key,
            "parameters": self.parameters,
            "tags": self.tags,
        }


def split_deployment_name(deployment_name: str) -> tuple[str, str]:
    """Split ``"flow/deployment"`` into its two parts, refusing anything else."""
    parts = deployment_name.split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise PrefectConfigurationError(
            f"deployment_name must look like '<flow name>/<deployment name>' "
            f"(e.g. 'data-pipeline/daily'), got {deployment_name!r}."
        )
    return parts[0].strip(), parts[1].strip()


def build_idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The base key for one Airflow task instance: ``dag_id:run_id:task_id:map_index``."""
    return f"{dag_id}:{run_id}:{task_id}:{-1 if map_index is None else map_index}"


def attempt_key(base_key: str, try_number: int) -> str:
    """Key used when attempt ``try_number`` has to create a run: the base key for the first."""
    return base_key if try_number <= 1 else f"{base_key}:try{try_number}"


def candidate_keys(base_key: str, try_number: int) -> list[str]:
    """Every key an attempt up to ``try_number`` may have used, oldest first."""
    return [attempt_key(base_key, n) for n in range(1, max(try_number, 1) + 1)]


@dataclass(frozen=True)
class RunDecision:
    """What an attempt does: reattach to ``flow_run`` or create a run with ``key``."""

    key: str
    flow_run: FlowRun | None = None

    @property
    def reattach(self) -> bool:
        """True when an existing run is reused."""
        return self.flow_run is not None


def choose_flow_run(existing: Iterable[FlowRun], base_key: str, try_number: int) -> RunDecision:
    """Decide whether Airflow attempt ``try_number`` reattaches or starts a new Prefect run.

    The newest run made by this task instance (by attempt) wins:
    - still running/scheduled/paused, or Completed: reattach (a retry after a worker crash or a
      timeout keeps waiting on the same run; nothing runs twice);
    - ended Failed/Crashed/Cancelled by an *earlier* attempt: start a new run keyed
      ``<base>:try<N>`` (a retry really retries instead of re-reporting the old failure);
    - ended unsuccessfully in *this* attempt (a resumed deferral): reattach and report it.
    """
    by_key = {run.idempotency_key: run for run in existing}
    keys = candidate_keys(base_key, try_number)
    for n in range(len(keys), 0, -1):
        run = by_key.get(keys[n - 1])
        if run is None:
            continue
        if not run.is_unsuccessful or n == try_number:
            return RunDecision(key=keys[n - 1], flow_run=run)
        break
    return RunDecision(key=attempt_key(base_key, try_number))


def ui_url_from_api_url(api_url: str) -> str:
    """Derive the Prefect UI base URL from the API URL.

    Open-source server: ``http://host:4200/api`` -> ``http://host:4200``. Prefect Cloud:
    ``https://api.prefect.cloud/api/accounts/A/workspaces/W`` ->
    ``https://app.prefect.cloud/account/A/workspace/W``.
    """
    api_url = api_url.rstrip("/")
    cloud = _CLOUD_API.match(api_url)
    if cloud:
        return (
            f"{cloud['scheme']}://app.{cloud['domain']}/account/{cloud['account']}"
            f"/workspace/{cloud['workspace']}"
        )
    return api_url[: -len("/api")] if api_url.endswith("/api") else api_url


def flow_run_url(ui_url: str, flow_run_id: str) -> str:
    """Link to a flow run's page in the Prefect UI."""
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def to_json_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Make rendered parameters JSON-safe; dates and other objects become their ``str()``."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise PrefectConfigurationError(
            f"parameters must be a mapping of flow parameter names to values, "
            f"got {type(parameters).__name__}."
        )
    normalised: dict[str, Any] = json.loads(json.dumps(dict(parameters), default=str))
    return normalised


def describe_outcome(flow_run: FlowRun, deployment_name: str, url: str) -> str:
    """One-line human summary of a finished run, used in errors and logs."""
    message = (flow_run.state_message or "no state message").strip()
    return (
        f"Prefect flow run '{flow_run.name}' ({flow_run.id}) of deployment "
        f"'{deployment_name}' ended {flow_run.state_name} [{flow_run.state_type}]: {message}. "
        f"Run URL: {url}"
    )


@dataclass
class PollSchedule:
    """When to check a flow run next, when the wait times out, how long an outage is tolerated.

    One schedule for the worker-side wait and the trigger: checks start 1 s apart and double up to
    ``poll_interval``; ``deadline`` is a Unix time (it survives the trigger being serialized and
    moved to another triggerer); while the Prefect API cannot be reached the wait goes on for up
    to ``unreachable_timeout`` seconds since the last successful check (``None``: forever), so a
    Prefect server restart does not end it.
    """

    poll_interval: float
    deadline: float | None = None
    unreachable_timeout: float | None = None
    delay: float = 0.0
    unreachable_since: float | None = None

    def __post_init__(self) -> None:
        self.delay = min(1.0, self.poll_interval)

    def timed_out(self, now: float) -> bool:
        """True once ``deadline`` has passed."""
        return self.deadline is not None and now >= self.deadline

    def next_sleep(self, now: float) -> float:
        """Seconds until the next check (never past the deadline); backs off for the next one."""
        sleep_for = self.delay
        if self.deadline is not None:
            sleep_for = min(sleep_for, max(self.deadline - now, 0.0))
        self.delay = min(self.delay * 2, self.poll_interval)
        return sleep_for

    def reached(self) -> None:
        """A check got an answer: the outage (if any) is over."""
        self.unreachable_since = None

    def rides_out(self, transient: bool, now: float) -> bool:
        """After a check that failed: True while the wait should go on (a transient error,
        before the deadline, within the tolerated outage)."""
        return transient and not self.timed_out(now) and self.tolerate_outage(now)

    def tolerate_outage(self, now: float) -> bool:
        """Record a check that found the API unreachable; True while the wait should go on."""
        if self.unreachable_since is None:
            self.unreachable_since = now
        if self.unreachable_timeout is None:
            return True
        return now - self.unreachable_since < self.unreachable_timeout
