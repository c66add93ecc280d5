"""The embedded PostgreSQL server's lifecycle, with real processes and real signals.

Each test has its own DATA_DIR, so its server is its own: started by a child process, looked at
and stopped with ``semantic-index db``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tasks.embedded_server import server_status
from tests.conftest import REPO, SETTINGS_ENV

#: A process that attaches to the embedded server, says so, then waits to be killed.
HOLDER = (
    "import sys, time\n"
    "from tasks.warehouse import get_warehouse\n"
    "get_warehouse()\n"
    "print('attached', flush=True)\n"
    "time.sleep(600)\n"
)


def user_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The machine's environment with only DATA_DIR of our settings (embedded server)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    env.update(DATA_DIR=str(data_dir), **extra)
    return env


def start_holder(data_dir: Path) -> subprocess.Popen[str]:
    """A child process holding the embedded server of ``data_dir``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        cwd=REPO,
        env=user_env(data_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "attached"
    return proc


def command(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``semantic-index db <args>`` for ``data_dir``."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "db", *args],
        cwd=REPO,
        env=user_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_stopped(pgdata: Path, timeout: float = 60) -> bool:
    """Whether the server on ``pgdata`` stopped within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server_status(pgdata).running:
            return True
        time.sleep(0.2)
    return False


def postmaster(pgdata: Path) -> psutil.Process:
    status = server_status(pgdata)
    assert status.running and status.pid
    return psutil.Process(status.pid)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A DATA_DIR whose server, if any is left running, is stopped after the test."""
    yield tmp_path / "data"
    pgdata = tmp_path / "data" / "pgdata"
    if server_status(pgdata).running:
        command(tmp_path / "data", "stop", "--force")


def test_orphan_is_reported_adopted_and_stopped(data_dir: Path) -> None:
    pgdata = data_dir / "pgdata"
    holder = start_holder(data_dir)
    server = postmaster(pgdata)
    holder.send_signal(signal.SIGKILL)  # no exit handler runs: the server is orphaned
    holder.wait()
    assert server.is_running()

    status = command(data_dir, "status")
    assert status.returncode == 0, status.stderr
    assert "running" in status.stdout and "died without letting go" in status.stdout
    assert str(holder.pid) in status.stdout

    # The next run adopts the server and, being its last holder, stops it when it exits.
    adopter = subprocess.run(
        [sys.executable, "-c", "from tasks.warehouse import get_warehouse; get_warehouse()"],
        cwd=REPO,
        env=user_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert adopter.returncode == 0, adopter.stderr
    assert "adopting it" in adopter.stderr
    assert wait_stopped(pgdata)
    assert "stopped" in command(data_dir, "status").stdout


def test_sigterm_stops_the_server_a_script_started(data_dir: Path) -> None:
    holder = start_holder(data_dir)
    server = postmaster(data_dir / "pgdata")
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    server.wait(timeout=60)
    assert wait_stopped(data_dir / "pgdata")


def test_stop_command_refuses_under_a_live_holder_unless_forced(data_dir: Path) -> None:
    holder = start_holder(data_dir)
    try:
        refused = command(data_dir, "stop")
        assert refused.returncode == 1
        assert f"in use by processes {holder.pid}" in refused.stderr and "--force" in refused.stderr
        assert server_status(data_dir / "pgdata").running

        forced = command(data_dir, "stop", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "Stopped" in forced.stdout
        assert wait_stopped(data_dir / "pgdata", timeout=5)
    finally:
        holder.kill()
        holder.wait()
    again = command(data_dir, "stop")  # stopping a stopped server is fine
    assert again.returncode == 0 and "stopped" in again.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_search_service_before_any_run_is_not_ready_and_sigterm_stops_its_server(
    data_dir: Path,
) -> None:
    """``semantic-index serve`` on a fresh data dir: /readyz says the index is not built (no dbt
    manifest), and SIGTERM shuts the service down *and* the embedded server it started."""
    port = _free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=user_env(data_dir, SEARCH_API_AUTH_DISABLED="true"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = None
        deadline = time.monotonic() + 300
        while ready is None and time.monotonic() < deadline:
            assert api.poll() is None, "the service exited"
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=60)
            except httpx.TransportError:
                time.sleep(0.5)
        assert ready is not None, "the service never answered"
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["database"] == "ok"
        assert checks["index"].startswith("not built: No dbt manifest")

        server = postmaster(data_dir / "pgdata")
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
        server.wait(timeout=60)
        assert wait_stopped(data_dir / "pgdata")
    finally:
        api.kill()
        api.wait()
