"""Serve the test flows the Airflow bridge tests trigger. Runs in the *Prefect* virtualenv.

Each flow writes what it received to ``$BRIDGE_RECORD_DIR/<flow run id>.json`` so the tests can
check that parameters arrive exactly as Airflow sent them. Deployments are named like the real
one (``<flow>/daily``).

Usage: PREFECT_API_URL=http://127.0.0.1:PORT/api BRIDGE_RECORD_DIR=/tmp/x python serve_flows.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prefect import Flow, flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.runtime import flow_run

# The checkout's own `tasks` package (this worktree, not whatever the venv's editable install
# points at), for the product's run-report writer.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def _record(extra: dict[str, Any] | None = None) -> None:
    record_dir = Path(os.environ["BRIDGE_RECORD_DIR"])
    payload = {
        "flow_run_id": flow_run.id,
        "flow_name": flow_run.flow_name,
        "parameters": flow_run.parameters,
        "tags": sorted(flow_run.tags),
        **(extra or {}),
    }
    tmp = record_dir / f".{flow_run.id}.tmp"
    tmp.write_text(json.dumps(payload, default=str))
    tmp.rename(record_dir / f"{flow_run.id}.json")


@flow(name="data-pipeline")
def data_pipeline(
    run_date: str, batch_size: int = 100, options: dict[str, Any] | None = None
) -> str:
    """Stand-in for the real pipeline: records its parameters and reports like the real one.

    The run report is written by the product's own ``tasks.ops.report.publish_run_report`` (the
    artifacts the Airflow bridge reads back): ``batch_size`` rows into ``items`` and twice as
    many into ``comments``, ``batch_size`` documents indexed.
    """
    from tasks.ops.report import publish_run_report

    _record()
    # A test that must see the Airflow task deferred before the run ends creates this file
    # first and deletes it to let the run go on.
    hold = Path(os.environ["BRIDGE_RECORD_DIR"]) / f"hold-{safe_token(run_date)}"
    deadline = time.monotonic() + 300
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    summary = SimpleNamespace(
        ingest=[
            SimpleNamespace(
                source="demo",
                rows_by_table={"items": batch_size, "comments": 2 * batch_size},
                rows=3 * batch_size,
            )
        ],
        dbt=None,
        index=[
            SimpleNamespace(
                namespace="docs",
                model="stand-in",
                documents=batch_size,
                chunks=batch_size,
                embedded=batch_size,
                unchanged=0,
                deleted=0,
                vectors_in_store=batch_size,
            )
        ],
        validation=None,
        seconds={"ingest": 0.1, "index": 0.1},
        failed_stage=None,
        error=None,
    )
    publish_run_report(summary)
    return f"processed {run_date}"


@flow(name="failing-pipeline")
def failing_pipeline(run_date: str) -> None:
    """Always fails with a recognisable message."""
    _record()
    raise ValueError(f"boom: source for {run_date} is unavailable")


@flow(name="slow-pipeline")
def slow_pipeline(seconds: float = 30.0) -> str:
    """Sleeps, for timeout, reattach and cancellation tests."""
    _record({"started_at": time.time()})
    time.sleep(seconds)
    return "slept"


@flow(name="gated-pipeline")
def gated_pipeline(token: str, max_wait: float = 120.0) -> str:
    """Runs until the test creates ``release-<token>`` in the record dir (deterministic timing)."""
    _record()
    gate = Path(os.environ["BRIDGE_RECORD_DIR"]) / f"release-{safe_token(token)}"
    deadline = time.monotonic() + max_wait
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.2)
    return "released"


def safe_token(token: str) -> str:
    """File-name-safe form of a token (Airflow run ids contain ':' and '+')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in token)


@flow(name="flaky-pipeline")
def flaky_pipeline(token: str) -> str:
    """Fails the first time it sees ``token``, succeeds afterwards."""
    _record()
    marker = Path(os.environ["BRIDGE_RECORD_DIR"]) / f"flaky-{safe_token(token)}"
    if not marker.exists():
        marker.write_text("seen")
        raise RuntimeError(f"flaky failure for {token}: first attempt")
    return "second time lucky"


def daily(pipeline: Flow[..., Any]) -> RunnerDeployment:
    """The ``daily`` deployment of ``pipeline``, built synchronously (no event loop runs here)."""
    deployment = pipeline.to_deployment(name="daily")
    # to_deployment's type also covers the coroutine it returns inside an event loop.
    assert isinstance(deployment, RunnerDeployment)
    return deployment


if __name__ == "__main__":
    serve(
        daily(data_pipeline),
        daily(failing_pipeline),
        daily(slow_pipeline),
        daily(flaky_pipeline),
        daily(gated_pipeline),
        limit=8,
    )
