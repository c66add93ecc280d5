"""DAGs the end-to-end tests run with `dag.test()`; one behaviour each.

Copied into the session's DAG folder by conftest. Connections come from AIRFLOW_CONN_* env vars
set by the fixtures, so nothing here depends on the test servers at parse time.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG
from prefect_airflow_bridge.operators import PrefectRunDeploymentOperator

START = pendulum.datetime(2025, 1, 1, tz="UTC")


def record_failure(context: Any) -> None:
    """Append the task's exception to $BRIDGE_TEST_FAILURES so tests can assert on it."""
    exc = context.get("exception")
    ti = context["ti"]
    with open(os.environ["BRIDGE_TEST_FAILURES"], "a") as fh:
        fh.write(
            json.dumps(
                {
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "try_number": ti.try_number,
                    "type": type(exc).__name__,
                    "message": str(exc),
                }
            )
            + "\n"
        )


def _dag(dag_id: str, **operator_kwargs: Any) -> DAG:
    retries = operator_kwargs.pop("retries", 0)
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={
            "retries": retries,
            "retry_delay": timedelta(seconds=0),
            "on_failure_callback": record_failure,
            "on_retry_callback": record_failure,
        },
    ) as dag:
        operator_kwargs.setdefault("poll_interval", 1)
        operator_kwargs.setdefault("timeout", timedelta(seconds=120))
        PrefectRunDeploymentOperator(task_id="run_flow", **operator_kwargs)
    return dag


ECHO_PARAMETERS = {
    "run_date": "{{ ds }}",
    "batch_size": 7,
    "options": {"mode": "full", "sources": ["api", "csv"], "ratio": 0.5, "dry_run": False},
}

echo_sync = _dag(
    "bridge_echo_sync",
    deployment_name="data-pipeline/daily",
    parameters=ECHO_PARAMETERS,
    tags=["airflow", "dag:{{ dag.dag_id }}"],
)
echo_deferrable = _dag(
    "bridge_echo_deferrable",
    deployment_name="data-pipeline/daily",
    parameters=ECHO_PARAMETERS,
    tags=["airflow", "dag:{{ dag.dag_id }}"],
    deferrable=True,
)
fail_sync = _dag(
    "bridge_fail_sync",
    deployment_name="failing-pipeline/daily",
    parameters={"run_date": "{{ ds }}"},
)
fail_deferrable = _dag(
    "bridge_fail_deferrable",
    deployment_name="failing-pipeline/daily",
    parameters={"run_date": "{{ ds }}"},
    deferrable=True,
)
# The gated flow runs until the test releases it after attempt 1 timed out (without cancelling
# the run); attempt 2 must reattach to that same run and see it complete.
reattach = _dag(
    "bridge_reattach",
    deployment_name="gated-pipeline/daily",
    parameters={"token": "{{ run_id }}"},
    timeout=timedelta(seconds=8),
    cancel_on_timeout=False,
    retries=1,
)
# Attempt 1's run fails; attempt 2 must start a new run (key suffix :try2) which succeeds.
flaky_retry = _dag(
    "bridge_flaky_retry",
    deployment_name="flaky-pipeline/daily",
    parameters={"token": "{{ run_id }}"},
    retries=1,
)
invalid_parameters = _dag(
    "bridge_invalid_parameters",
    deployment_name="data-pipeline/daily",
    parameters={"run_date": "{{ ds }}", "batch_size": "not-a-number"},
    retries=3,
)
server_down = _dag(
    "bridge_server_down",
    deployment_name="data-pipeline/daily",
    parameters={"run_date": "{{ ds }}"},
    prefect_conn_id="prefect_down",
)
timeout_cancels = _dag(
    "bridge_timeout_cancels",
    deployment_name="slow-pipeline/daily",
    parameters={"seconds": 60},
    timeout=timedelta(seconds=4),
    deferrable=True,
)

# For the real deployment (api-server + scheduler + dag-processor + triggerer): a run that goes on
# until the test opens its gate, so a test can restart a component or kill the task mid-wait.
# No retries: a wait that does not survive fails the DAG run.
live_gated = _dag(
    "bridge_live_gated",
    deployment_name="gated-pipeline/daily",
    parameters={"token": "{{ run_id }}", "max_wait": 300},
    timeout=timedelta(seconds=400),
    deferrable=True,
)
live_gated_sync = _dag(
    "bridge_live_gated_sync",
    deployment_name="gated-pipeline/daily",
    parameters={"token": "{{ run_id }}", "max_wait": 300},
    timeout=timedelta(seconds=400),
)
# The connection exists only in the metadata DB (not as AIRFLOW_CONN_*): what `dag.test()` and
# `airflow dags test` users have after following the README.
db_connection_deferrable = _dag(
    "bridge_db_connection_deferrable",
    deployment_name="data-pipeline/daily",
    parameters={"run_date": "{{ ds }}"},
    prefect_conn_id="prefect_in_db",
    deferrable=True,
)
