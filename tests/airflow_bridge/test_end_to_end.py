"""End to end: real Prefect server + served flows, real Airflow metadata DB, `dag.test()`."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from conftest import PrefectApi, safe_token

pytestmark = pytest.mark.usefixtures("bridge_env")


def run_dag(dagbag: Any, dag_id: str, **overrides: Any) -> tuple[Any, Any]:
    """`dag.test()` one DAG; returns (dag_run, task instance of its only/first task)."""
    dag = dagbag.dags[dag_id]
    task_id = dag.task_ids[0]
    for name, value in overrides.items():
        setattr(dag.get_task(task_id), name, value)
    dag_run = dag.test()
    return dag_run, dag_run.get_task_instance(task_id)


def base_key(dag_run: Any, task_id: str) -> str:
    return f"{dag_run.dag_id}:{dag_run.run_id}:{task_id}:-1"


ECHO_OPTIONS = {"mode": "full", "sources": ["api", "csv"], "ratio": 0.5, "dry_run": False}


@pytest.mark.parametrize("dag_id", ["bridge_echo_sync", "bridge_echo_deferrable"])
def test_success_and_parameters_arrive_as_sent(
    dagbag: Any, prefect_api: PrefectApi, dag_id: str
) -> None:
    dag_run, ti = run_dag(dagbag, dag_id)

    assert dag_run.state == "success"
    assert ti.state == "success"
    runs = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow"))
    assert len(runs) == 1
    assert runs[0]["state"]["type"] == "COMPLETED"
    recorded = prefect_api.record(runs[0]["id"])
    assert recorded["parameters"] == {
        "run_date": dag_run.logical_date.strftime("%Y-%m-%d"),
        "batch_size": 7,
        "options": ECHO_OPTIONS,
    }
    assert {"airflow", f"dag:{dag_id}"} <= set(recorded["tags"])


def test_example_dag_runs_the_pipeline_deployment(dagbag: Any, prefect_api: PrefectApi) -> None:
    # The shipped DAG as is (deferrable), only polling faster than in production.
    dag_run, ti = run_dag(dagbag, "prefect_data_pipeline", poll_interval=1)

    assert dag_run.state == "success", ti.state
    runs = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_data_pipeline"))
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
    assert runs[0]["name"] == f"airflow-{dag_run.logical_date.strftime('%Y%m%d')}"
    recorded = prefect_api.record(runs[0]["id"])
    assert recorded["flow_name"] == "data-pipeline"
    assert recorded["parameters"]["run_date"] == dag_run.logical_date.strftime("%Y-%m-%d")


@pytest.mark.parametrize("dag_id", ["bridge_fail_sync", "bridge_fail_deferrable"])
def test_failed_flow_fails_task_with_state_message_and_url(
    dagbag: Any, prefect_api: PrefectApi, failures: Any, dag_id: str
) -> None:
    dag_run, ti = run_dag(dagbag, dag_id)

    assert dag_run.state == "failed"
    assert ti.state == "failed"
    runs = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow"))
    assert len(runs) == 1 and runs[0]["state"]["type"] == "FAILED"
    [failure] = failures()
    assert failure["type"] == "PrefectFlowRunFailed"
    url = f"{prefect_api.api_url.removesuffix('/api')}/runs/flow-run/{runs[0]['id']}"
    assert url in failure["message"]
    assert "ended Failed [FAILED]" in failure["message"]
    assert "boom: source for" in failure["message"]


def test_retry_reattaches_to_the_same_prefect_run(
    dagbag: Any, prefect_api: PrefectApi, failures: Any
) -> None:
    # Try 1 times out while the gated run is still going (and leaves it running); once try 1
    # has failed, a helper thread opens the gate so the run completes while try 2 waits on it.
    stop = threading.Event()

    def release_after_first_failure() -> None:
        while not stop.is_set():
            for failure in failures():
                gate = prefect_api.record_dir / f"release-{safe_token(failure['run_id'])}"
                gate.touch()
                return
            time.sleep(0.2)

    helper = threading.Thread(target=release_after_first_failure, daemon=True)
    helper.start()
    try:
        dag_run, ti = run_dag(dagbag, "bridge_reattach")
    finally:
        stop.set()
        helper.join(timeout=5)

    assert dag_run.state == "success"
    assert ti.try_number == 2
    [timeout] = failures()
    assert timeout["type"] == "PrefectFlowRunTimeout" and timeout["try_number"] == 1
    assert "a retry reattaches to it" in timeout["message"]
    runs = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow"))
    assert len(runs) == 1, [r["idempotency_key"] for r in runs]
    assert runs[0]["state"]["type"] == "COMPLETED"


def test_retry_after_failed_run_starts_a_new_run(
    dagbag: Any, prefect_api: PrefectApi, failures: Any
) -> None:
    dag_run, ti = run_dag(dagbag, "bridge_flaky_retry")

    assert dag_run.state == "success"
    assert ti.try_number == 2
    key = base_key(dag_run, "run_flow")
    runs = prefect_api.runs_with_key_prefix(key)
    assert [(r["idempotency_key"], r["state"]["type"]) for r in runs] == [
        (key, "FAILED"),
        (f"{key}:try2", "COMPLETED"),
    ]
    assert [f["type"] for f in failures()] == ["PrefectFlowRunFailed"]


def test_invalid_parameters_fail_at_once_without_retry(
    dagbag: Any, prefect_api: PrefectApi, failures: Any
) -> None:
    dag_run, ti = run_dag(dagbag, "bridge_invalid_parameters")

    assert dag_run.state == "failed"
    assert ti.state == "failed"
    assert ti.try_number == 1  # retries=3 in the DAG, none used
    [failure] = failures()
    assert failure["type"] == "AirflowFailException"
    assert "HTTP 409" in failure["message"] and "batch_size" in failure["message"]
    assert prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow")) == []


def test_server_down_gives_a_clear_connection_error(dagbag: Any, failures: Any) -> None:
    dag_run, ti = run_dag(dagbag, "bridge_server_down")

    assert dag_run.state == "failed"
    [failure] = failures()
    assert failure["type"] == "PrefectConnectionError"
    assert "Could not reach the Prefect API at http://127.0.0.1:" in failure["message"]
    assert "Check that the Prefect server is running" in failure["message"]


def test_deferred_timeout_cancels_the_prefect_run(
    dagbag: Any, prefect_api: PrefectApi, failures: Any
) -> None:
    dag_run, ti = run_dag(dagbag, "bridge_timeout_cancels")

    assert dag_run.state == "failed"
    [failure] = failures()
    assert failure["type"] == "PrefectFlowRunTimeout"
    assert "was cancelled" in failure["message"]
    [run] = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow"))
    assert prefect_api.wait_for_state(run["id"], {"CANCELLED"}) == "CANCELLED"


def _wait_running(prefect_api: PrefectApi, prefix: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = prefect_api.runs_with_key_prefix(prefix)
        if runs and runs[0]["state"]["type"] == "RUNNING":
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"no RUNNING flow run with key {prefix}")


class FakeTI:
    """Just enough of a task instance for `execute` outside a DAG run."""

    def __init__(self, run_id: str) -> None:
        self.dag_id, self.run_id, self.task_id = "bridge_kill", run_id, "run_flow"
        self.map_index, self.try_number = -1, 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_killing_the_task_cancels_the_prefect_run(prefect_api: PrefectApi) -> None:
    from prefect_airflow_bridge.exceptions import PrefectFlowRunFailed
    from prefect_airflow_bridge.operators import PrefectRunDeploymentOperator

    op = PrefectRunDeploymentOperator(
        task_id="run_flow",
        deployment_name="slow-pipeline/daily",
        parameters={"seconds": 60},
        poll_interval=1,
    )
    ti = FakeTI(run_id=f"kill-{time.time()}")
    outcome: dict[str, Any] = {}

    def execute() -> None:
        try:
            op.execute({"ti": ti})
        except Exception as exc:  # collected for the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=execute)
    worker.start()
    run = _wait_running(prefect_api, f"bridge_kill:{ti.run_id}")
    op.on_kill()  # what Airflow calls when the task is killed (mark failed, SIGTERM)
    worker.join(timeout=60)

    assert not worker.is_alive()
    assert prefect_api.wait_for_state(run["id"], {"CANCELLED"}) == "CANCELLED"
    assert isinstance(outcome.get("error"), PrefectFlowRunFailed)
    assert "Cancelled" in str(outcome["error"])


def test_killing_the_deferred_task_cancels_the_prefect_run(prefect_api: PrefectApi) -> None:
    from prefect_airflow_bridge.hooks import PrefectHook
    from prefect_airflow_bridge.triggers import PrefectFlowRunTrigger

    hook = PrefectHook()
    deployment = hook.get_deployment("slow-pipeline/daily")
    key = f"bridge_kill_deferred:{time.time()}"
    created, _ = hook.create_flow_run(
        deployment["id"], parameters={"seconds": 60}, idempotency_key=key
    )
    _wait_running(prefect_api, key)

    classpath, kwargs = PrefectFlowRunTrigger(flow_run_id=created.id, poll_interval=1).serialize()
    assert classpath == "prefect_airflow_bridge.triggers.PrefectFlowRunTrigger"
    trigger = PrefectFlowRunTrigger(**kwargs)

    async def run_then_kill() -> None:
        # The triggerer cancels the run() task, then calls on_kill() for a user's kill.
        task = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(2)
        assert not task.done()
        task.cancel()
        await trigger.on_kill()

    asyncio.run(run_then_kill())
    assert prefect_api.wait_for_state(created.id, {"CANCELLED"}) == "CANCELLED"


def test_dag_test_trigger_reads_a_connection_stored_in_the_metadata_db(
    dagbag: Any, prefect_api: PrefectApi, airflow_db: Any
) -> None:
    # The first report: `airflow connections add` (metadata DB, no AIRFLOW_CONN_*),
    # execute() found the connection, then the in-line trigger failed with
    # AirflowNotFoundException and the Prefect run went on unobserved.
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import prefect_connection_json

    airflow_bin = Path(sys.executable).parent / "airflow"
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_PREFECT_IN_DB"}
    subprocess.run(
        [str(airflow_bin), "connections", "delete", "prefect_in_db"], env=env, capture_output=True
    )
    added = subprocess.run(
        [
            str(airflow_bin),
            "connections",
            "add",
            "prefect_in_db",
            "--conn-json",
            prefect_connection_json(prefect_api.api_url),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert added.returncode == 0, added.stderr[-2000:]
    assert "AIRFLOW_CONN_PREFECT_IN_DB" not in os.environ

    dag_run, ti = run_dag(dagbag, "bridge_db_connection_deferrable")

    assert dag_run.state == "success", ti.state
    [run] = prefect_api.runs_with_key_prefix(base_key(dag_run, "run_flow"))
    assert run["state"]["type"] == "COMPLETED"
