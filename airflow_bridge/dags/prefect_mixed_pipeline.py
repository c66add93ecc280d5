"""A mixed pipeline: wait for the day's export in Airflow, run the Prefect pipeline, report on it.

1. ``wait_for_export`` (Airflow's FileSensor, rescheduling so it holds no worker slot) waits for
   ``<fs_default path>/exports/<ds>/_SUCCESS``, the marker an upstream export job writes last.
2. ``run_data_pipeline`` runs the Prefect deployment ``data-pipeline/daily`` for that day and waits
   in the triggerer (deferrable); a failed run fails the task with Prefect's state and message.
3. ``report_pipeline_run`` (TaskFlow) reads what the run did from XCom: rows loaded and documents
   indexed (from the run's ``pipeline-rows-loaded`` and ``pipeline-index`` artifacts, pushed by
   the operator as ``flow_run_artifacts``) and the run URL; it asks Prefect for the run's final
   state with the bridge's hook, and fails if the run loaded nothing.

Needs the Airflow connections ``prefect_default`` (see airflow_bridge/README.md) and
``fs_default`` (type ``fs``, extra ``{"path": "<export root>"}``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, XComArg, task
from prefect_airflow_bridge.operators import PrefectRunDeploymentOperator

#: Artifact keys of the pipeline's run report (ARTIFACT_KEYS in the main project's
#: tasks/ops/report.py).
ROWS_ARTIFACT = "pipeline-rows-loaded"
INDEX_ARTIFACT = "pipeline-index"


@task
def report_pipeline_run(
    flow_run_id: str, flow_run_url: str, artifacts: dict[str, Any] | None
) -> dict[str, Any]:
    """Summarise the Prefect run for downstream consumers (and the task log)."""
    from airflow.sdk.exceptions import AirflowFailException
    from prefect_airflow_bridge.hooks import PrefectHook

    artifacts = artifacts or {}
    rows = sum(int(row["rows"]) for row in artifacts.get(ROWS_ARTIFACT) or [])
    documents = sum(int(row["documents"]) for row in artifacts.get(INDEX_ARTIFACT) or [])
    run = PrefectHook().get_flow_run(flow_run_id)  # the hook works from TaskFlow code too
    if rows == 0:
        raise AirflowFailException(
            f"Prefect run {flow_run_url} ended {run.state_name} but loaded no rows: check the "
            "day's export and the run's 'pipeline-rows-loaded' artifact."
        )
    return {
        "flow_run_id": flow_run_id,
        "flow_run_url": flow_run_url,
        "state": run.state_name,
        "rows_loaded": rows,
        "documents_indexed": documents,
    }


with DAG(
    dag_id="prefect_mixed_pipeline",
    description="export lands (Airflow) -> data pipeline (Prefect) -> report (Airflow)",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["prefect", "data-pipeline"],
    doc_md=__doc__,
) as dag:
    wait_for_export = FileSensor(
        task_id="wait_for_export",
        fs_conn_id="fs_default",
        filepath="exports/{{ ds }}/_SUCCESS",
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(hours=6).total_seconds(),
    )
    run_pipeline = PrefectRunDeploymentOperator(
        task_id="run_data_pipeline",
        deployment_name="data-pipeline/daily",
        parameters={"run_date": "{{ ds }}"},
        tags=["airflow", "airflow-dag:{{ dag.dag_id }}"],
        poll_interval=30,
        timeout=timedelta(hours=6),
        deferrable=True,
    )
    # TaskFlow: Airflow resolves these XComArgs to their values before the task runs; its type
    # hints cannot say so.
    report = report_pipeline_run(
        flow_run_id=run_pipeline.output,  # type: ignore[arg-type]
        flow_run_url=XComArg(run_pipeline, key="flow_run_url"),  # type: ignore[arg-type]
        artifacts=XComArg(run_pipeline, key="flow_run_artifacts"),  # type: ignore[arg-type]
    )
    wait_for_export >> run_pipeline >> report
