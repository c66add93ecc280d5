"""The example DAG parses cleanly, cheaply and without touching the network."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from conftest import EXAMPLE_DAGS


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError(f"DAG file opened a network connection at parse time: {args}")


def test_example_dag_imports_without_errors_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    started = time.monotonic()
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    elapsed = time.monotonic() - started

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"prefect_data_pipeline", "prefect_mixed_pipeline"}
    assert elapsed < 10, f"parsing took {elapsed:.1f}s; keep DAG files light"


def test_example_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from prefect_airflow_bridge.operators import PrefectRunDeploymentOperator

    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags["prefect_data_pipeline"]
    assert dag.task_ids == ["run_data_pipeline"]
    assert str(dag.schedule) == "@daily"
    assert getattr(dag.timetable, "expression", None) == "0 0 * * *"
    assert dag.catchup is False
    task = dag.get_task("run_data_pipeline")
    assert isinstance(task, PrefectRunDeploymentOperator)
    assert task.deployment_name == "data-pipeline/daily"
    assert task.deferrable is True
    assert task.prefect_conn_id == "prefect_default"
    assert task.parameters == {"run_date": "{{ ds }}"}
    assert task.retries == 2
