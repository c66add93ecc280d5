"""A real Airflow 3 deployment on loopback: api-server, scheduler, dag-processor, triggerer.

Each component is its own `airflow <component>` process (as in production), sharing one
AIRFLOW_HOME, a SQLite metadata DB (Airflow 3 runs LocalExecutor on SQLite: workers talk to the
API server, never to the DB) and one JWT secret. Components can be stopped and started on their
own, which the restart scenarios need. Used by conftest's session fixtures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def tail(path: Path, lines: int = 60) -> str:
    """Last lines of a log file (for failure messages)."""
    if not path.exists():
        return "<no log>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 60
) -> None:
    """Stop a process group we started ourselves; SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, on_timeout: Callable[[], str] = str
) -> Any:
    """Poll ``check`` (twice a second) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}"
            )
        time.sleep(0.5)


def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    """REST path of a task instance (run ids contain ':' and '+', so they are quoted)."""
    return f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


class AirflowStack:
    """Start/stop the Airflow components and talk to the public REST API (`/api/v2`)."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}
        self._token: str | None = None
        #: Root of the `fs_default` connection (where the mixed DAG's sensor looks).
        self.exports: Path | None = None

    # -- processes -------------------------------------------------------------------------

    def log_path(self, component: str) -> Path:
        """Where one start of a component logs (each restart gets its own file)."""
        return self.home / f"{component}-{self.starts.get(component, 0)}.log"

    def start(self, component: str) -> None:
        """Start ``airflow <component>`` in its own process group."""
        self.starts[component] = self.starts.get(component, 0) + 1
        args = [str(AIRFLOW_BIN), component]
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with self.log_path(component).open("wb") as log:
            self.procs[component] = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def stop(self, component: str, sig: int = signal.SIGTERM) -> None:
        """Stop one component (SIGTERM: a graceful shutdown, SIGKILL: a crash)."""
        proc = self.procs.pop(component, None)
        if proc is not None:
            stop_process(proc, sig)

    def stop_all(self) -> None:
        """Stop every component, the API server last (the others report to it)."""
        for component in ("triggerer", "scheduler", "dag-processor", "api-server"):
            self.stop(component)

    def logs(self) -> str:
        """The tails of the current logs of every component."""
        return "\n".join(
            f"--- {c} ---\n{tail(self.log_path(c), 40)}" for c in COMPONENTS if c in self.starts
        )

    def assert_running(self) -> None:
        """Fail with the component's log if one of them died."""
        for component, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(
                    f"airflow {component} exited with {proc.returncode}:\n"
                    f"{tail(self.log_path(component))}"
                )

    def scheduler_processed_deferral(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """True once the scheduler has handled the executor's event for the deferring attempt.

        Until then a resumed task can race the scheduler (Airflow 3.3 fails a task whose stale
        "success" event arrives while it is queued again), so tests let a wait end only after.
        """
        needle = (
            f"Received executor event with state success for task instance "
            f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        )
        return any(
            needle in self.home.joinpath(f"scheduler-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts.get("scheduler", 0) + 1)
        )

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run an `airflow ...` CLI command against this deployment."""
        return subprocess.run(
            [str(AIRFLOW_BIN), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    # -- REST API --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            # SimpleAuthManager with all_admins: the token endpoint hands out an admin token.
            response = httpx.get(f"{self.base_url}/auth/token", timeout=30)
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call `/api/v2/<path>` (or an absolute path starting with '/')."""
        url = f"{self.base_url}{path if path.startswith('/') else '/api/v2/' + path}"
        for attempt in range(5):
            try:
                return httpx.request(method, url, headers=self._headers(), timeout=60, **kwargs)
            except httpx.TransportError:
                # SQLite-backed server under load: a dropped connection is not a test result.
                if attempt == 4:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")  # pragma: no cover

    def healthy(self) -> bool:
        """True once the API server answers its health endpoint."""
        try:
            return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def health(self) -> dict[str, Any]:
        """`GET /api/v2/monitor/health` (scheduler, triggerer, dag processor heartbeats)."""
        return dict(httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=30).json())

    def component_healthy(self, name: str) -> bool:
        """Whether the health endpoint reports ``name`` (e.g. "triggerer") healthy."""
        try:
            status: object = self.health().get(name, {}).get("status")
            return status == "healthy"
        except (httpx.TransportError, ValueError):
            return False

    def dag_loaded(self, dag_id: str) -> bool:
        """True once the dag processor has serialized ``dag_id``."""
        response = self.api("GET", f"dags/{dag_id}")
        return response.status_code == 200

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (the scheduler then creates its scheduled runs and runs its tasks)."""

        def unpaused() -> bool:
            # The dag processor's first write of a new DAG can reset the flag: check it stuck.
            response = self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
            assert response.status_code == 200, response.text
            time.sleep(1)
            return self.api("GET", f"dags/{dag_id}").json()["is_paused"] is False

        wait_until(f"DAG {dag_id} unpaused", unpaused, 120, self.logs)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Create a DAG run now; returns its run id."""
        response = self.api(
            "POST",
            f"dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """`GET dags/{dag_id}/dagRuns/{run_id}`."""
        response = self.api("GET", f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        response.raise_for_status()
        return dict(response.json())

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """`GET .../taskInstances/{task_id}`."""
        response = self.api("GET", f"{ti_path(dag_id, run_id, task_id)}")
        response.raise_for_status()
        return dict(response.json())

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 240
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states``; return it."""

        def check() -> dict[str, Any] | None:
            self.assert_running()
            ti = self.task_instance(dag_id, run_id, task_id)
            return ti if ti["state"] in states else None

        return dict(
            wait_until(
                f"{dag_id}.{task_id} in {states}",
                check,
                timeout,
                lambda: f"{self.task_instance(dag_id, run_id, task_id)}\n{self.logs()}",
            )
        )

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until the DAG run finished (success or failed); return it."""

        def check() -> dict[str, Any] | None:
            self.assert_running()
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in {"success", "failed"} else None

        return dict(
            wait_until(
                f"DAG run {dag_id}/{run_id} to finish",
                check,
                timeout,
                lambda: f"{self.dag_run(dag_id, run_id)}\n{self.logs()}",
            )
        )

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What a user does with "Mark failed/success" in the UI."""
        response = self.api(
            "PATCH",
            f"{ti_path(dag_id, run_id, task_id)}",
            json={"new_state": state},
        )
        assert response.status_code == 200, response.text

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        """One XCom value (deserialized) of a task instance."""
        response = self.api(
            "GET",
            f"{ti_path(dag_id, run_id, task_id)}/xcomEntries/{key}",
            params={"deserialize": "true", "stringify": "false"},
        )
        response.raise_for_status()
        return response.json()["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task's log for one try, as text."""
        response = self.api(
            "GET",
            f"{ti_path(dag_id, run_id, task_id)}/logs/{try_number}",
            params={"full_content": "true"},
        )
        response.raise_for_status()
        body = response.json()
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(
                str(item.get("event", item)) if isinstance(item, dict) else str(item)
                for item in content
            )
        return str(content)
