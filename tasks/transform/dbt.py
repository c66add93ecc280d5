"""Run the dbt project through prefect-dbt so every model and test shows up as a Prefect task.

dbt reads its connection from ``dbt_models/profiles.yml``, which takes everything from
environment variables; :func:`dbt_environment` sets them from the resolved warehouse for the
duration of the invocation (the password as ``DBT_ENV_SECRET_*`` so dbt scrubs it from logs).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import TransformError
from tasks.settings import Settings
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)


@dataclass
class DbtResult:
    """Outcome of one dbt invocation, by node."""

    command: str
    models_built: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    tests_warned: int = 0
    failures: list[str] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No node errored or failed."""
        return not self.failures


@contextlib.contextmanager
def dbt_environment(settings: Settings, warehouse: Warehouse) -> Iterator[None]:
    """Set the variables ``profiles.yml`` reads, restoring the previous values afterwards."""
    values = {
        **warehouse.dbt_env(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_TARGET_PATH": str(settings.dbt_target_dir),
        "DBT_LOG_PATH": str(settings.dbt_target_dir.parent / "logs"),
    }
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_dbt(
    args: list[str], settings: Settings, warehouse: Warehouse, *, mirror_nodes: bool = True
) -> DbtResult:
    """Invoke dbt (``["build"]``, ``["docs", "generate"]``, ...).

    With ``mirror_nodes`` (inside a flow run) each dbt node becomes a Prefect task, through
    prefect-dbt. ``docs generate`` passes ``mirror_nodes=False``: it compiles every node again,
    and mirroring would show each node twice in the run (once built, once "documented").

    Raises:
        TransformError: dbt could not run, a model failed or a data test failed; the message
            lists every failing node with dbt's own message.
    """
    from dbt.cli.main import dbtRunner
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    project_dir = settings.dbt_project_dir
    if not (project_dir / "dbt_project.yml").is_file():
        raise TransformError(f"No dbt project at {project_dir}: set DBT_PROJECT_DIR.")
    vars_arg = ["--vars", f"{{raw_schema: {settings.raw_schema}}}"]
    command = " ".join(args)
    with dbt_environment(settings, warehouse):
        try:
            if mirror_nodes:
                show_skipped_nodes_as_skipped()
                runner = PrefectDbtRunner(
                    settings=PrefectDbtSettings(
                        project_dir=project_dir,
                        profiles_dir=project_dir,
                        target_path=settings.dbt_target_dir,
                    ),
                    raise_on_failure=False,
                )
                res = runner.invoke([*args, *vars_arg])
            else:
                paths = ["--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
                paths += ["--target-path", str(settings.dbt_target_dir)]
                res = dbtRunner().invoke([*args, *paths, *vars_arg])
        except ValueError as exc:  # prefect-dbt wraps dbt's own exceptions in ValueError
            raise TransformError(f"dbt {command} could not run: {exc}") from None
    result = _summarize(command, res)
    return raise_if_failed(result, settings.dbt_target_dir.parent / "logs")


#: Prefect state name of a dbt node's task run when dbt skipped the node.
SKIPPED_STATE = "Skipped"


def show_skipped_nodes_as_skipped() -> None:
    """Make prefect-dbt end the task run of a node that dbt *skipped* as ``Skipped``.

    prefect-dbt (0.7.25) runs every node dbt starts as a task whose function,
    ``prefect_dbt.core.runner.execute_dbt_node``, fails on dbt's failure statuses and otherwise
    returns: a node skipped downstream of a failure shows as Completed, which reads as "ran
    fine". No option changes that, and the task runs reach the API asynchronously, so they
    cannot be corrected afterwards either. The runner looks the function up at each call, so
    we wrap it once: for dbt's skipped statuses (prefect-dbt's own ``SKIPPED_STATUSES``) the
    task returns a ``Completed(name="Skipped")`` state, which Prefect makes the run's final
    state. tests/test_pipeline.py checks it against the real runner.
    """
    from prefect.states import Completed
    from prefect_dbt.core import runner

    original = runner.execute_dbt_node
    if getattr(original, "_shows_skips", False):
        return

    def execute_dbt_node(task_state: Any, node_id: str, asset_id: str | None) -> Any:
        result = original(task_state, node_id, asset_id)
        status = task_state.get_node_status(node_id) or {}
        node_status = status.get("event_data", {}).get("node_info", {}).get("node_status")
        if node_status in runner.SKIPPED_STATUSES:
            return Completed(
                name=SKIPPED_STATE, message="dbt skipped this node: an upstream node failed."
            )
        return result

    execute_dbt_node._shows_skips = True  # type: ignore[attr-defined]
    runner.execute_dbt_node = execute_dbt_node


def _summarize(command: str, res: Any) -> DbtResult:
    """Count dbt's results by dbt's own types: ``NodeType`` and the node's status.

    A result's ``status`` is a ``RunStatus``, ``TestStatus`` or ``FreshnessStatus``; all are
    string enums over ``NodeStatus`` values, so one comparison against ``NodeStatus`` covers each.
    ``nodes`` keeps the plain values (``"model"``, ``"success"``) for reports and JSON.
    """
    # Imported here, like dbt itself in run_dbt: the flows import this module for DbtResult,
    # and importing dbt costs them about 2 s.
    from dbt.artifacts.resources.types import NodeType
    from dbt.artifacts.schemas.results import NodeStatus

    failed = {NodeStatus.Error, NodeStatus.Fail, NodeStatus.RuntimeErr}
    built = {NodeType.Model, NodeType.Seed, NodeType.Snapshot}
    result = DbtResult(command=command)
    for node_result in getattr(res.result, "results", None) or []:
        node = node_result.node
        status = NodeStatus(node_result.status)
        kind = NodeType(node.resource_type)
        result.nodes.append(
            {"node": node.unique_id, "name": node.name, "type": kind.value, "status": status.value}
        )
        if kind is NodeType.Test:
            if status is NodeStatus.Pass:
                result.tests_passed += 1
            elif status is NodeStatus.Warn:
                result.tests_warned += 1
            elif status in failed:
                result.tests_failed += 1
        elif kind in built and status is NodeStatus.Success:
            result.models_built += 1
        if status in failed:
            result.failures.append(f"{kind.value} {node.name}: {node_result.message}")
    if not res.success and not result.failures:
        result.failures.append(str(res.exception or "dbt reported failure"))
    return result


def raise_if_failed(result: DbtResult, log_dir: Path) -> DbtResult:
    """``result`` if every node passed, else a :class:`TransformError` carrying it."""
    if result.failures:
        error = TransformError(
            f"dbt {result.command} failed ({len(result.failures)} node(s)): "
            + "; ".join(result.failures)
            + f". Logs: {log_dir / 'dbt.log'}. Fix the data in the source or the "
            "model, then re-run; models downstream of a failure were skipped."
        )
        error.result = result
        raise error
    logger.info(
        "dbt %s: %d models built, %d tests passed",
        result.command,
        result.models_built,
        result.tests_passed,
    )
    return result
