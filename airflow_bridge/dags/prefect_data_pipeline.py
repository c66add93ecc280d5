"""Run the Prefect pipeline deployment `data-pipeline/daily` once a day from Airflow.

Airflow only triggers and watches: the flow itself runs on Prefect's workers. The task waits in
the triggerer (deferrable), fails with the Prefect state, message and run URL when the flow run
ends Failed/Crashed/Cancelled, and a retry reattaches to the same Prefect run unless that run
already failed (then it starts a fresh one). Marking the task failed cancels the Prefect run.

Needs the Airflow connection `prefect_default` (see airflow_bridge/README.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from prefect_airflow_bridge.operators import PrefectRunDeploymentOperator

with DAG(
    dag_id="prefect_data_pipeline",
    description="dlt ingest -> dbt -> embeddings -> vector index, run by Prefect",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
    },
    tags=["prefect", "data-pipeline"],
    doc_md=__doc__,
) as dag:
    PrefectRunDeploymentOperator(
        task_id="run_data_pipeline",
        deployment_name="data-pipeline/daily",
        # The day Airflow is processing, so backfills and reruns load the right partition.
        parameters={"run_date": "{{ ds }}"},
        tags=["airflow", "airflow-dag:{{ dag.dag_id }}"],
        flow_run_name="airflow-{{ ds_nodash }}",
        poll_interval=30,
        timeout=timedelta(hours=6),
        deferrable=True,
    )
