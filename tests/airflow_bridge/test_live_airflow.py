"""Against a real Airflow 3.3 deployment: api-server, scheduler, dag-processor, triggerer.

The connection `prefect_default` lives only in the metadata DB, created with the README's CLI
command (see conftest.airflow_stack), so every lookup goes the way Airflow 3 resolves it: the
worker and the triggerer ask their supervisor, which asks the API server.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PrefectApi, PrefectServer, prefect_connection_json, safe_token
from stack import AirflowStack, ti_path, wait_until

pytestmark = pytest.mark.usefixtures("bridge_env")

_DATES = itertools.count(1)


def next_day() -> str:
    """A new logical day (after the test DAGs' start date) for each DAG run a test creates."""
    day = next(_DATES)
    return f"2025-{2 + day // 28:02d}-{1 + day % 28:02d}"


def trigger(stack: AirflowStack, dag_id: str) -> str:
    """A manual DAG run with its own logical date (so `{{ ds }}` differs per run)."""
    response = stack.api(
        "POST", f"dags/{dag_id}/dagRuns", json={"logical_date": f"{next_day()}T00:00:00Z"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["dag_run_id"])


def key_prefix(dag_id: str, run_id: str, task_id: str = "run_flow") -> str:
    return f"{dag_id}:{run_id}:{task_id}:-1"


def wait_for_run(prefect_api: PrefectApi, prefix: str, states: set[str]) -> dict[str, Any]:
    """The one Prefect run with this key prefix, once it is in one of ``states``."""

    def check() -> dict[str, Any] | None:
        runs = prefect_api.runs_with_key_prefix(prefix)
        return runs[0] if runs and runs[0]["state"]["type"] in states else None

    return dict(wait_until(f"a Prefect run {prefix} in {states}", check, 180))


def wait_deferred_in_triggerer(
    stack: AirflowStack,
    dag_id: str,
    run_id: str,
    not_job: int | None = None,
    task_id: str = "run_flow",
) -> dict[str, Any]:
    """Wait until the task is deferred and held by a triggerer (other than ``not_job``).

    Also until the scheduler has processed the deferring attempt's executor event: ending the
    wait earlier can hit an Airflow 3.3 scheduler race (see ``run_gated_to_success``).
    """

    def check() -> dict[str, Any] | None:
        stack.assert_running()
        ti = stack.task_instance(dag_id, run_id, task_id)
        job = ti.get("triggerer_job") or {}
        if (
            ti["state"] == "deferred"
            and job.get("id")
            and job["id"] != not_job
            and stack.scheduler_processed_deferral(dag_id, run_id, task_id)
        ):
            return ti
        return None

    return dict(
        wait_until(
            f"{dag_id} deferred in a triggerer",
            check,
            240,
            lambda: f"{stack.task_instance(dag_id, run_id, task_id)}\n{stack.logs()}",
        )
    )


def release(prefect_api: PrefectApi, run_id: str) -> None:
    """Let the gated flow of DAG run ``run_id`` finish."""
    (prefect_api.record_dir / f"release-{safe_token(run_id)}").touch()


def logs_mention(stack: AirflowStack, *needles: str) -> bool:
    """True when one log file under the deployment's home contains all of ``needles``."""
    for path in stack.home.rglob("*.log"):
        text = path.read_text(errors="replace")
        if all(needle in text for needle in needles):
            return True
    return False


# -- item 1 / 3: connection from the metadata DB, real deferral -------------------------------


def run_gated_to_success(
    stack: AirflowStack, prefect_api: PrefectApi, dag_id: str = "bridge_live_gated"
) -> tuple[str, dict[str, Any]]:
    """Trigger the gated DAG, open the gate once a triggerer holds the wait, wait for success.

    The gate keeps the Prefect run going until the deferral is settled: a run that ends before
    the scheduler processed the executor's event for the deferring attempt races Airflow 3.3's
    scheduler (it then finds the task queued again and fails it; seen 6 s after the deferral
    under load).
    """
    run_id = trigger(stack, dag_id)
    wait_deferred_in_triggerer(stack, dag_id, run_id)
    wait_for_run(prefect_api, key_prefix(dag_id, run_id), {"RUNNING"})
    release(prefect_api, run_id)
    dag_run = stack.wait_for_dag_run(dag_id, run_id)
    ti = stack.task_instance(dag_id, run_id, "run_flow")
    assert dag_run["state"] == "success", (ti, stack.task_log(dag_id, run_id, "run_flow", 1))
    [run] = prefect_api.runs_with_key_prefix(key_prefix(dag_id, run_id))
    return run_id, run


def test_deferred_wait_resolves_the_db_connection_in_the_triggerer(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "bridge_live_gated"
    run_id, run = run_gated_to_success(airflow_stack, prefect_api, dag_id)

    ti = airflow_stack.task_instance(dag_id, run_id, "run_flow")
    assert ti["try_number"] == 1
    assert run["state"]["type"] == "COMPLETED"
    assert prefect_api.record(run["id"])["parameters"] == {"token": run_id, "max_wait": 300}
    # The triggerer process (not an in-line dag.test) did the waiting and saw the run end.
    assert logs_mention(airflow_stack, "Trigger fired event", "'status': 'terminal'", run["id"])
    # Item 4: the extra link stored for the UI's "Prefect flow run" button.
    links = airflow_stack.api("GET", f"{ti_path(dag_id, run_id, 'run_flow')}/links").json()
    ui = prefect_api.api_url.removesuffix("/api")
    assert links["extra_links"] == {"Prefect flow run": f"{ui}/runs/flow-run/{run['id']}"}


def test_triggerer_restart_mid_wait_resumes_the_wait(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "bridge_live_gated"
    run_id = trigger(airflow_stack, dag_id)
    prefix = key_prefix(dag_id, run_id)
    ti = wait_deferred_in_triggerer(airflow_stack, dag_id, run_id)
    run = wait_for_run(prefect_api, prefix, {"RUNNING"})

    airflow_stack.stop("triggerer")  # SIGTERM: a restart / redeploy of the triggerer
    assert prefect_api.flow_run(run["id"])["state"]["type"] == "RUNNING"  # not cancelled
    airflow_stack.start("triggerer")
    wait_deferred_in_triggerer(airflow_stack, dag_id, run_id, not_job=ti["triggerer_job"]["id"])
    release(prefect_api, run_id)

    dag_run = airflow_stack.wait_for_dag_run(dag_id, run_id)
    assert dag_run["state"] == "success"
    assert airflow_stack.task_instance(dag_id, run_id, "run_flow")["try_number"] == 1
    runs = prefect_api.runs_with_key_prefix(prefix)
    assert [(r["id"], r["state"]["type"]) for r in runs] == [(run["id"], "COMPLETED")]


def test_marking_the_deferred_task_failed_cancels_the_prefect_run(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "bridge_live_gated"
    run_id = trigger(airflow_stack, dag_id)
    wait_deferred_in_triggerer(airflow_stack, dag_id, run_id)
    run = wait_for_run(prefect_api, key_prefix(dag_id, run_id), {"RUNNING"})

    airflow_stack.set_task_state(dag_id, run_id, "run_flow", "failed")  # the user's "Mark failed"

    assert prefect_api.wait_for_state(run["id"], {"CANCELLED"}, timeout=180) == "CANCELLED"
    assert airflow_stack.wait_for_dag_run(dag_id, run_id)["state"] == "failed"


def test_marking_the_running_task_failed_cancels_the_prefect_run(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "bridge_live_gated_sync"
    run_id = trigger(airflow_stack, dag_id)
    airflow_stack.wait_for_task_state(dag_id, run_id, "run_flow", {"running"})
    run = wait_for_run(prefect_api, key_prefix(dag_id, run_id), {"RUNNING"})

    airflow_stack.set_task_state(dag_id, run_id, "run_flow", "failed")

    assert prefect_api.wait_for_state(run["id"], {"CANCELLED"}, timeout=180) == "CANCELLED"
    assert airflow_stack.wait_for_dag_run(dag_id, run_id)["state"] == "failed"


# -- item 2: re-entry with next_method and no event -------------------------------------------


def test_resume_without_event_reattaches_instead_of_type_error(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "bridge_live_gated"
    run_id, run = run_gated_to_success(airflow_stack, prefect_api, dag_id)

    # The state the issue found: the task instance still carries next_method=execute_complete
    # but no event (next_kwargs) when it runs again. Set exactly that in the metadata DB and
    # let the real scheduler and worker run it.
    import sqlite3

    with sqlite3.connect(airflow_stack.home / "airflow.db", timeout=60) as db:
        db.execute(
            "UPDATE task_instance SET state = 'scheduled', next_method = 'execute_complete', "
            "next_kwargs = NULL, end_date = NULL WHERE dag_id = ? AND run_id = ? "
            "AND task_id = 'run_flow'",
            (dag_id, run_id),
        )
        db.execute(
            "UPDATE dag_run SET state = 'running', end_date = NULL WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )

    def finished() -> dict[str, Any] | None:
        ti = airflow_stack.task_instance(dag_id, run_id, "run_flow")
        return ti if ti["state"] in {"success", "failed"} and ti["end_date"] else None

    ti = wait_until("the resumed task to finish", finished, 240, airflow_stack.logs)
    assert ti["state"] == "success", airflow_stack.task_log(dag_id, run_id, "run_flow", 1)
    # Reattached through the idempotency key: still the one run, not a second one.
    runs = prefect_api.runs_with_key_prefix(key_prefix(dag_id, run_id))
    assert [r["id"] for r in runs] == [run["id"]]


# -- item 4: provider registration, connection form, test button ------------------------------


def test_provider_registers_connection_type_with_its_form(airflow_stack: AirflowStack) -> None:
    providers = airflow_stack.api("GET", "providers").json()["providers"]
    assert any(p["package_name"] == "prefect-airflow-bridge" for p in providers)

    meta = airflow_stack.api("GET", "/ui/connections/hook_meta").json()
    [prefect] = [m for m in meta if m["connection_type"] == "prefect"]
    assert prefect["hook_name"] == "Prefect"
    fields = prefect["extra_fields"]
    assert {"auth", "account_id", "workspace_id", "ui_url", "timeout", "max_retries"} <= set(fields)
    assert fields["auth"]["schema"]["enum"][:3] == ["none", "basic", "bearer"]
    standard = prefect["standard_fields"]
    assert standard["host"]["title"] == "Prefect API URL"
    assert standard["password"]["title"] == "Password or API key"
    assert standard["port"]["hidden"] is True


def _plain_script_env(stack: AirflowStack) -> dict[str, str]:
    return {**stack.env, "PYTHONPATH": ""}


def test_test_connection_works_against_the_db_connection(airflow_stack: AirflowStack) -> None:
    # A plain script (no task, no supervisor), as in the issue.
    script = (
        "from prefect_airflow_bridge.hooks import PrefectHook\n"
        "import json; print(json.dumps(PrefectHook('prefect_default').test_connection()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env=_plain_script_env(airflow_stack),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ok, message = json.loads(result.stdout.strip().splitlines()[-1])
    assert ok is True, message

    # `airflow connections test` and the UI's Test button (POST /connections/test).
    cli = airflow_stack.cli("connections", "test", "prefect_default")
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    stored = airflow_stack.api("GET", "connections/prefect_default").json()
    button = airflow_stack.api(
        "POST",
        "connections/test",
        json={"connection_id": "prefect_default", "conn_type": "prefect", "host": stored["host"]},
    ).json()
    assert button["status"] is True, button


def test_test_button_reports_refused_credentials(
    airflow_stack: AirflowStack, closed_port_url: str
) -> None:
    button = airflow_stack.api(
        "POST",
        "connections/test",
        json={
            "connection_id": "prefect_nowhere",
            "conn_type": "prefect",
            "host": closed_port_url,
            "extra": json.dumps({"max_retries": 0}),
        },
    ).json()
    assert button["status"] is False
    assert "Could not reach the Prefect API at" in button["message"]


# -- item 6: the mixed example DAG ------------------------------------------------------------


def test_mixed_example_dag_reports_what_the_prefect_run_did(
    airflow_stack: AirflowStack, prefect_api: PrefectApi
) -> None:
    dag_id = "prefect_mixed_pipeline"
    airflow_stack.unpause(dag_id)  # the scheduler creates today's scheduled run

    def scheduled_run() -> dict[str, Any] | None:
        runs = airflow_stack.api("GET", f"dags/{dag_id}/dagRuns").json()["dag_runs"]
        return runs[0] if runs else None

    dag_run = wait_until("the mixed DAG's scheduled run", scheduled_run, 240, airflow_stack.logs)
    run_id = dag_run["dag_run_id"]
    ds = dag_run["logical_date"][:10]
    sensor = airflow_stack.wait_for_task_state(
        dag_id, run_id, "wait_for_export", {"up_for_reschedule"}
    )
    assert sensor["try_number"] == 1  # waiting for the export, nothing started in Prefect yet
    assert prefect_api.runs_with_key_prefix(f"{dag_id}:{run_id}") == []
    assert airflow_stack.exports is not None
    hold = prefect_api.record_dir / f"hold-{safe_token(ds)}"
    hold.touch()  # keeps the Prefect run going until the task is deferred (see above)
    marker = airflow_stack.exports / "exports" / ds / "_SUCCESS"
    marker.parent.mkdir(parents=True)
    marker.touch()  # the upstream export finished
    wait_deferred_in_triggerer(airflow_stack, dag_id, run_id, task_id="run_data_pipeline")
    hold.unlink()

    # The sensor pokes once a minute (reschedule mode), then the run and the report follow.
    dag_run = airflow_stack.wait_for_dag_run(dag_id, run_id, timeout=600)

    assert dag_run["state"] == "success", airflow_stack.logs()
    [run] = prefect_api.runs_with_key_prefix(key_prefix(dag_id, run_id, "run_data_pipeline"))
    assert run["state"]["type"] == "COMPLETED"
    assert prefect_api.record(run["id"])["parameters"]["run_date"] == ds
    artifacts = httpx.post(
        f"{prefect_api.api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
        timeout=30,
    ).json()
    tables = {a["key"]: json.loads(a["data"]) for a in artifacts if a["type"] == "table"}
    report = airflow_stack.xcom(dag_id, run_id, "report_pipeline_run", "return_value")
    assert report == {
        "flow_run_id": run["id"],
        "flow_run_url": f"{prefect_api.api_url.removesuffix('/api')}/runs/flow-run/{run['id']}",
        "state": "Completed",
        "rows_loaded": sum(row["rows"] for row in tables["pipeline-rows-loaded"]),
        "documents_indexed": sum(row["documents"] for row in tables["pipeline-index"]),
    }
    assert report["rows_loaded"] == 300 and report["documents_indexed"] == 100


# -- item 3: Prefect server restarted mid-wait (last: it restarts a shared server) ------------


def test_prefect_server_restart_mid_wait_does_not_end_the_wait(
    airflow_stack: AirflowStack, prefect_api: PrefectApi, prefect_server: PrefectServer
) -> None:
    dag_id = "bridge_live_gated"
    run_id = trigger(airflow_stack, dag_id)
    prefix = key_prefix(dag_id, run_id)
    wait_deferred_in_triggerer(airflow_stack, dag_id, run_id)
    run = wait_for_run(prefect_api, prefix, {"RUNNING"})

    prefect_server.stop()
    try:
        # The trigger saw the outage (a check failed after the hook's retries) and kept waiting.
        wait_until(
            "the trigger to report the unreachable Prefect API",
            lambda: logs_mention(airflow_stack, "Prefect API unreachable", run["id"]),
            240,
            airflow_stack.logs,
        )
        assert airflow_stack.task_instance(dag_id, run_id, "run_flow")["state"] == "deferred"
    finally:
        prefect_server.start()
    release(prefect_api, run_id)

    dag_run = airflow_stack.wait_for_dag_run(dag_id, run_id)
    assert dag_run["state"] == "success", airflow_stack.logs()
    assert airflow_stack.task_instance(dag_id, run_id, "run_flow")["try_number"] == 1
    runs = prefect_api.runs_with_key_prefix(prefix)
    assert [(r["id"], r["state"]["type"]) for r in runs] == [(run["id"], "COMPLETED")]


def test_readme_connection_command_is_the_one_the_tests_use() -> None:
    readme = (Path(__file__).resolve().parents[2] / "airflow_bridge" / "README.md").read_text()
    command = (
        "airflow connections add prefect_default --conn-json \\\n"
        f"  '{prefect_connection_json('http://prefect:4200/api')}'"
    )
    assert command in readme
