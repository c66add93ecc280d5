"""Fixtures for the operations tests: ONE real Prefect server, ONE process worker, a webhook
receiver and small demo data, per session.

The server is ``prefect server start`` on a free port (SQLite in a temp ``PREFECT_HOME``,
analytics off). The work pool, limits and alert automations come from ``semantic-index
setup``; the deployments from ``prefect deploy --all`` on a copy of ``prefect.yaml``
whose only change is the ``pull`` section (``set_working_directory`` to this checkout instead of
a git clone: the tests run uncommitted code). Every secret setting the worker gets is a canary
string that ``test_ops_secrets`` looks for in logs, artifacts and process output.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import SETTINGS_ENV, create_database

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = REPO / "data" / "demo"
#: Items in the small data set (and so documents and vectors).
N_ITEMS = 12
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------- small data


@dataclass
class SmallData:
    """A sources file with ``N_ITEMS`` demo items and their reviews, and a broken copy."""

    good: Path
    bad: Path
    items: int
    reviews: int


def _write_sources(
    folder: Path, items: list[dict[str, str]], reviews: list[dict[str, str]]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("items", items), ("reviews", reviews)):
        with (folder / f"{name}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    spec = yaml.safe_load((REPO / "sources.yml").read_text())
    for source in spec["sources"]:
        for resource in source["resources"]:
            resource["path"] = f"{resource['table']}.csv"
    path = folder / "sources.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> SmallData:
    """The first ``N_ITEMS`` demo items; the broken copy has a review rated 7 (dbt test fails)."""
    with (DEMO / "items.csv").open(newline="") as f:
        items = list(csv.DictReader(f))[:N_ITEMS]
    ids = {row["item_id"] for row in items}
    with (DEMO / "reviews.csv").open(newline="") as f:
        reviews = [row for row in csv.DictReader(f) if row["item_id"] in ids]
    root = tmp_path_factory.mktemp("sources")
    good = _write_sources(root / "good", items, reviews)
    broken = [dict(row) for row in reviews]
    broken[0]["rating"] = "7"
    bad = _write_sources(root / "bad", items, broken)
    return SmallData(good=good, bad=bad, items=len(items), reviews=len(reviews))


# ------------------------------------------------------------------------------ webhook receiver


@dataclass
class Receiver:
    """A local Slack-compatible webhook: records every POST (path and JSON body)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def wait_for(self, predicate: Any, timeout: float = 90) -> list[dict[str, Any]]:
        """Messages matching ``predicate`` once at least one arrived (or [] after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in list(self.requests) if predicate(r)]
            if found:
                return found
            time.sleep(0.5)
        return []


@pytest.fixture(scope="session")
def webhook() -> Iterator[Receiver]:
    """The receiver, on a free port, for the whole session."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = json.loads(body or b"{}")
            except json.JSONDecodeError:
                payload = {"raw": body.decode(errors="replace")}
            received.append({"path": self.path, "json": payload})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(url=f"http://127.0.0.1:{server.server_port}", requests=received)
    server.shutdown()


# ------------------------------------------------------------------------------- Prefect server


def _clean_env() -> dict[str, str]:
    """This process's environment without Prefect or product settings (no developer leaks)."""
    drop = {k.upper() for k in SETTINGS_ENV} | {
        "ALERT_WEBHOOK_URL",
        "BACKUP_DIR",
        "BACKUP_KEEP",
        "EMBEDDING_CONCURRENCY_LIMIT",
    }
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k not in drop}


class RetryUnavailable(httpx.BaseTransport):
    """Retries 503 answers, as Prefect's own client (and the Airflow bridge's hook) do: the
    server answers 503 to errors a client should retry, such as its SQLite database being busy
    while the worker, the event pipeline and the automations write to it."""

    def __init__(self, attempts: int = 6) -> None:
        self._inner = httpx.HTTPTransport()
        self._attempts = attempts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self._attempts):
            response = self._inner.handle_request(request)
            if response.status_code != 503 or attempt == self._attempts - 1:
                return response
            response.close()
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._inner.close()


@dataclass
class PrefectServer:
    """A running ``prefect server start``."""

    api_url: str
    home: Path
    log: Path
    env: dict[str, str]

    def client(self) -> httpx.Client:
        """HTTP client on the server's REST API."""
        return httpx.Client(base_url=self.api_url, timeout=30, transport=RetryUnavailable())


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port with its own home and SQLite database."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **_clean_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "INFO",
        # A run waiting for the deployment's slot re-checks every 5 s instead of 30 s.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
    }
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prefect server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield PrefectServer(api_url=api_url, home=home, log=log, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------- deployments + a worker


@dataclass
class Ops:
    """Everything the ops tests share: server, worker env, canaries, databases."""

    server: PrefectServer
    worker_env: dict[str, str]
    worker_log: Path
    canaries: dict[str, str]
    database_url: str
    data_dir: Path
    pg_host: str
    small: SmallData
    webhook: Receiver
    deploy_output: str
    extra: dict[str, Any] = field(default_factory=dict)

    def deployment_id(self, flow: str, name: str) -> str:
        """Id of deployment ``flow/name``."""
        with self.server.client() as c:
            r = c.get(f"/deployments/name/{flow}/{name}")
            r.raise_for_status()
            return str(r.json()["id"])

    def trigger(self, flow: str, name: str, **body: Any) -> str:
        """Create a flow run of a deployment through the REST API; returns its id."""
        with self.server.client() as c:
            r = c.post(f"/deployments/{self.deployment_id(flow, name)}/create_flow_run", json=body)
            r.raise_for_status()
            return str(r.json()["id"])

    def wait(self, run_id: str, timeout: float = 600) -> dict[str, Any]:
        """Poll the run until it reaches a final state; returns the run.

        ``timeout`` only guards against a hang: a full pipeline run through the worker took
        over 240 s at a load average of 20 on these 2 cores."""
        deadline = time.monotonic() + timeout
        with self.server.client() as c:
            while True:
                run = c.get(f"/flow_runs/{run_id}").json()
                if run["state_type"] in FINAL:
                    return dict(run)
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"run {run_id} still {run['state_name']}; worker log:\n"
                        + self.worker_log.read_text()[-4000:]
                    )
                time.sleep(1)

    def states(self, run_id: str) -> list[str]:
        """Names of every state the run went through, oldest first."""
        with self.server.client() as c:
            r = c.get("/flow_run_states/", params={"flow_run_id": run_id})
            r.raise_for_status()
            states = sorted(r.json(), key=lambda s: s["timestamp"])
            return [s["name"] for s in states]

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's artifacts by key."""
        with self.server.client() as c:
            r = c.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
            r.raise_for_status()
            found = {a["key"]: a for a in r.json() if a.get("key")}
        for artifact in found.values():
            if artifact["type"] == "table" and isinstance(artifact["data"], str):
                artifact["data"] = json.loads(artifact["data"])
        return found


def run_ok(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command from the checkout; fail the test with its output unless it exits 0."""
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


#: Deployments also deployed as ``<name>-from-git`` with the real pull steps.
GIT_DEPLOYMENTS = ("ingest-only", "transform-only")

#: Appended to the snapshot's flows/ingest.py: the worker's output shows which code ran.
CLONE_MARKER = 'print("pipeline code loaded from", __file__, flush=True)\n'


def snapshot_repository(path: Path) -> Path:
    """A git repository holding this checkout as it is now (uncommitted changes included),
    on branch ``main``, for the deployments that clone the code like a real worker does."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    with (path / "flows" / "ingest.py").open("a") as f:
        f.write(CLONE_MARKER)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def ops(
    prefect_server: PrefectServer,
    pg_server: str,
    small_data: SmallData,
    webhook: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ops]:
    """Set up the server (setup command + ``prefect deploy --all``) and start ONE worker."""
    token = uuid.uuid4().hex[:12]
    canaries = {
        "DATABASE_URL": f"canary-db-pw-{token}",
        "OPENAI_API_KEY": f"sk-canary-openai-{token}",
        "ALERT_WEBHOOK_URL": f"canary-hook-{token}",
    }
    database_url = create_database(pg_server).replace(
        "postgres:test@", f"postgres:{canaries['DATABASE_URL']}@"
    )
    assert canaries["DATABASE_URL"] in database_url
    data_dir = tmp_path_factory.mktemp("ops-data")
    worker_home = tmp_path_factory.mktemp("worker-home")
    git_repo = snapshot_repository(tmp_path_factory.mktemp("git") / "pipeline")
    env = {
        **prefect_server.env,
        # For the deployments that use prefect.yaml's real pull steps (GIT_DEPLOYMENTS).
        "PIPELINE_GIT_REPOSITORY": str(git_repo),
        "PIPELINE_GIT_BRANCH": "main",
        "PREFECT_HOME": str(worker_home),
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "SOURCES_FILE": str(small_data.good),
        "EMBEDDING_PROVIDER": "local",
        "OPENAI_API_KEY": canaries["OPENAI_API_KEY"],
        "ALERT_WEBHOOK_URL": f"{webhook.url}/hook/{canaries['ALERT_WEBHOOK_URL']}",
        "DBT_DOCS": "false",
        "BACKUP_KEEP": "1",
        # Poll often: the tests wait on the worker, not on the schedule.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }

    run_ok([str(BIN / "python"), "-m", "flows.cli", "setup", "--max-run-minutes", "30"], env, 120)

    # The real prefect.yaml, except the pull steps: run this checkout instead of a git clone.
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    spec["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    prefect_file = tmp_path_factory.mktemp("deploy") / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    deploy_all = ["deploy", "--all", "--prefect-file", str(prefect_file)]
    deploy = run_ok([str(BIN / "prefect"), "--no-prompt", *deploy_all], env, 300)

    # Two more deployments with prefect.yaml's pull steps exactly as shipped (git clone).
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    spec["deployments"] = [
        {**d, "name": f"{d['name']}-from-git", "schedules": []}
        for d in spec["deployments"]
        if d["name"] in GIT_DEPLOYMENTS
    ]
    git_file = tmp_path_factory.mktemp("deploy-git") / "prefect.yaml"
    git_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    git_deploy = ["deploy", "--all", "--prefect-file", str(git_file)]
    run_ok([str(BIN / "prefect"), "--no-prompt", *git_deploy], env, 300)

    worker_log = worker_home / "worker.log"
    with worker_log.open("w") as out:
        worker = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                "pipeline-process",
                "--type",
                "process",
                "--limit",
                "4",
                "--no-create-pool-if-not-found",
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Ops(
            server=prefect_server,
            worker_env=env,
            worker_log=worker_log,
            canaries=canaries,
            database_url=database_url,
            data_dir=data_dir,
            pg_host=pg_server,
            small=small_data,
            webhook=webhook,
            deploy_output=deploy.stdout + deploy.stderr,
        )
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
