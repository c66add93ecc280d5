"""Fixtures: an isolated Airflow home (SQLite), a real Prefect server and served test flows.

Runs in the Airflow virtualenv; the Prefect side runs as subprocesses of the Prefect virtualenv
(`PREFECT_PYTHON`, default `<repo>/.venv/bin/python`). One server and one serve process per
session keep the suite at a couple of minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from stack import COMPONENTS, AirflowStack, wait_until

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BRIDGE = REPO / "airflow_bridge"
EXAMPLE_DAGS = BRIDGE / "dags"
TEST_DAGS = HERE / "dags"

# Airflow reads its configuration on first import, so the isolated home must exist before any
# test module imports airflow.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="airflow-bridge-tests-"))
_AIRFLOW_HOME = _SESSION_DIR / "airflow"
_DAGS_DIR = _AIRFLOW_HOME / "dags"
_DAGS_DIR.mkdir(parents=True)
for source in (*EXAMPLE_DAGS.glob("*.py"), *TEST_DAGS.glob("*.py")):
    shutil.copy(source, _DAGS_DIR / source.name)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "BRIDGE_TEST_FAILURES": str(_SESSION_DIR / "failures.jsonl"),
    }
)

PREFECT_PYTHON = Path(os.environ.get("PREFECT_PYTHON", str(REPO / ".venv" / "bin" / "python")))
DEPLOYMENTS = (
    "data-pipeline",
    "failing-pipeline",
    "slow-pipeline",
    "flaky-pipeline",
    "gated-pipeline",
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return "<no log>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started ourselves (serve spawns one child per flow run)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture()
def closed_port_url() -> str:
    """An API URL on a port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api"


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """Scratch directory for the whole session."""
    return _SESSION_DIR


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` into the session's SQLite metadata DB."""
    airflow_bin = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow_bin), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}"
    return _AIRFLOW_HOME


def _prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PREFECT_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_UI_ENABLED": "false",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class PrefectServer:
    """A real Prefect server on a fixed port and SQLite DB, restartable in place."""

    def __init__(self, home: Path, log_dir: Path) -> None:
        self.home = home
        self.log_dir = log_dir
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the server and wait until `/health` answers."""
        self.starts += 1
        log_path = self.log_dir / f"prefect-server-{self.starts}.log"
        with log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [
                    str(PREFECT_PYTHON),
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_prefect_env(self.home),
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"Prefect server exited early:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Prefect server not healthy after 180s:\n{_tail(log_path)}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server (its DB stays, so a restart keeps every flow run)."""
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path) -> Iterator[PrefectServer]:
    """The session's Prefect server (tests may restart it)."""
    if not PREFECT_PYTHON.exists():
        pytest.fail(
            f"Prefect python not found at {PREFECT_PYTHON}: create the Prefect venv "
            "(make install) or set PREFECT_PYTHON."
        )
    home = session_dir / "prefect"
    home.mkdir()
    server = PrefectServer(home, session_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server: PrefectServer) -> str:
    """The API URL of the session's Prefect server."""
    return prefect_server.api_url


@pytest.fixture(scope="session")
def record_dir(session_dir: Path) -> Path:
    """Where the served flows write what they received."""
    path = session_dir / "records"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def served_flows(prefect_api_url: str, session_dir: Path, record_dir: Path) -> Iterator[str]:
    """Serve the test deployments (`<flow>/daily`) until the session ends."""
    log_path = session_dir / "prefect-serve.log"
    env = _prefect_env(session_dir / "prefect", prefect_api_url)
    env["BRIDGE_RECORD_DIR"] = str(record_dir)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(PREFECT_PYTHON), str(HERE / "prefect_side" / "serve_flows.py")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        pending = set(DEPLOYMENTS)
        while pending:
            if proc.poll() is not None:
                pytest.fail(f"serve_flows.py exited early:\n{_tail(log_path)}")
            for name in list(pending):
                response = httpx.get(f"{prefect_api_url}/deployments/name/{name}/daily", timeout=5)
                if response.status_code == 200:
                    pending.discard(name)
            if time.monotonic() > deadline:
                pytest.fail(f"deployments {pending} not served after 120s:\n{_tail(log_path)}")
            time.sleep(0.5)
        # The runner polls for scheduled runs only once it is up; give it a moment past
        # deployment registration.
        time.sleep(2)
        yield prefect_api_url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def bridge_env(airflow_db: Path, served_flows: str) -> Iterator[str]:
    """Airflow connections: `prefect_default` -> the test server, `prefect_down` -> a dead port."""
    os.environ["AIRFLOW_CONN_PREFECT_DEFAULT"] = json.dumps(
        {"conn_type": "http", "host": served_flows, "extra": {"timeout": 10}}
    )
    os.environ["AIRFLOW_CONN_PREFECT_DOWN"] = json.dumps(
        {
            "conn_type": "http",
            "host": f"http://127.0.0.1:{free_port()}/api",
            "extra": {"max_retries": 2, "retry_backoff": 0.2, "timeout": 2},
        }
    )
    yield served_flows


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    """All DAGs in the session's DAG folder (the example DAG plus the test DAGs)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(_DAGS_DIR))
    assert not bag.import_errors, bag.import_errors
    return bag


class PrefectApi:
    """Tiny test-side client to inspect what happened on the Prefect server."""

    def __init__(self, api_url: str, record_dir: Path) -> None:
        self.api_url = api_url
        self.record_dir = record_dir

    def runs_with_key_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Flow runs whose idempotency key starts with ``prefix`` (oldest first)."""
        response = httpx.post(
            f"{self.api_url}/flow_runs/filter",
            json={"sort": "EXPECTED_START_TIME_ASC", "limit": 200},
            timeout=10,
        )
        response.raise_for_status()
        runs = [r for r in response.json() if (r.get("idempotency_key") or "").startswith(prefix)]
        return sorted(runs, key=lambda r: r["created"])

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """`GET /flow_runs/{id}`."""
        response = httpx.get(f"{self.api_url}/flow_runs/{flow_run_id}", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def wait_for_state(self, flow_run_id: str, types: set[str], timeout: float = 60) -> str:
        """Poll until the run's state type is one of ``types``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.flow_run(flow_run_id)["state"]["type"]
            if state in types or time.monotonic() > deadline:
                return str(state)
            time.sleep(0.5)

    def record(self, flow_run_id: str) -> dict[str, Any]:
        """What the flow recorded about itself."""
        return dict(json.loads((self.record_dir / f"{flow_run_id}.json").read_text()))


@pytest.fixture(scope="session")
def prefect_api(bridge_env: str, record_dir: Path) -> PrefectApi:
    """Inspection client for the session's Prefect server."""
    return PrefectApi(bridge_env, record_dir)


@pytest.fixture()
def failures() -> Iterator[Any]:
    """Read the exceptions the test DAGs' failure callback recorded during one test."""
    path = Path(os.environ["BRIDGE_TEST_FAILURES"])
    path.unlink(missing_ok=True)

    def read() -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    yield read


#: Test DAGs the live deployment runs (unpaused once parsed); the example DAGs stay paused until
#: a test unpauses one.
LIVE_DAGS = ("bridge_live_gated", "bridge_live_gated_sync")


def prefect_connection_json(api_url: str) -> str:
    """The `--conn-json` of README's "Open-source server, no auth" example, for ``api_url``."""
    return json.dumps({"conn_type": "prefect", "host": api_url})


@pytest.fixture(scope="session")
def airflow_stack(served_flows: str, session_dir: Path) -> Iterator[AirflowStack]:
    """A real Airflow deployment (api-server, scheduler, dag-processor, triggerer) on loopback.

    Its own AIRFLOW_HOME and SQLite metadata DB; the DAG folder of the in-process tests. The
    connection `prefect_default` is created in the metadata DB with the CLI command the README
    gives (no AIRFLOW_CONN_* variables reach these processes), and `fs_default` points at the
    session's export root for the mixed example DAG.
    """
    home = session_dir / "airflow-live"
    home.mkdir()
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PREFECT_", "_AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS_DIR),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Only the DAGs a test unpauses run: the example DAGs' daily schedules stay quiet.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            # Every component signs/validates the same task tokens.
            "AIRFLOW__API_AUTH__JWT_SECRET": "bridge-tests-" + "x" * 40,
            "AIRFLOW__API__SECRET_KEY": "bridge-tests-" + "k" * 20,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "BRIDGE_TEST_FAILURES": str(session_dir / "live-failures.jsonl"),
        }
    )
    stack = AirflowStack(home, env, port)
    migrate = stack.cli("db", "migrate", timeout=300)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stderr[-3000:]}"
    added = stack.cli(
        "connections",
        "add",
        "prefect_default",
        "--conn-json",
        prefect_connection_json(served_flows),
    )
    assert added.returncode == 0, added.stderr[-3000:]
    exports = session_dir / "exports"
    exports.mkdir()
    added = stack.cli(
        "connections",
        "add",
        "fs_default",
        "--conn-type",
        "fs",
        "--conn-extra",
        json.dumps({"path": str(exports)}),
    )
    assert added.returncode == 0, added.stderr[-3000:]
    try:
        for component in COMPONENTS:
            stack.start(component)
        wait_until("the Airflow API server", stack.healthy, 240, stack.logs)
        for name in ("scheduler", "triggerer", "dag_processor"):
            wait_until(
                f"a healthy {name}",
                partial(stack.component_healthy, name),
                240,
                lambda: f"{stack.health()}\n{stack.logs()}",
            )
        for dag_id in (*LIVE_DAGS, "prefect_mixed_pipeline"):
            wait_until(f"DAG {dag_id} parsed", partial(stack.dag_loaded, dag_id), 240, stack.logs)
        for dag_id in LIVE_DAGS:
            stack.unpause(dag_id)
        stack.exports = exports
        yield stack
    finally:
        stack.stop_all()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's scratch dir (servers are stopped by then); keep it on request."""
    if os.environ.get("BRIDGE_KEEP_TMP"):
        print(f"\n[airflow_bridge] kept {_SESSION_DIR}")
        return
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def safe_token(token: str) -> str:
    """Same file-name-safe form as prefect_side/serve_flows.py uses for gate/marker files."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in token)
