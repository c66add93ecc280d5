"""Operator that runs a Prefect deployment from Airflow and reports its outcome."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NoReturn

from airflow.sdk import BaseOperator

try:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        TaskDeferralError,
        TaskDeferralTimeout,
    )
except ImportError:  # Airflow releases before the Task SDK exported them
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        TaskDeferralError,
        TaskDeferralTimeout,
    )

from prefect_airflow_bridge.core import (
    FlowRun,
    build_idempotency_key,
    candidate_keys,
    choose_flow_run,
    describe_outcome,
    to_json_parameters,
)
from prefect_airflow_bridge.exceptions import (
    PrefectBridgeError,
    PrefectConfigurationError,
    PrefectFlowRunFailed,
    PrefectFlowRunTimeout,
    PrefectInvalidRequestError,
)
from prefect_airflow_bridge.hooks import PrefectHook, is_transient
from prefect_airflow_bridge.links import FLOW_RUN_URL_XCOM_KEY, PrefectFlowRunLink
from prefect_airflow_bridge.triggers import PrefectFlowRunTrigger

#: Extra time the triggerer may run past the operator's own timeout before Airflow gives up
#: on the deferral; the trigger normally reports the timeout itself (and cancels the run).
_DEFER_GRACE = timedelta(minutes=5)


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _retries_left(ti: Any) -> bool:
    """Whether Airflow will run another try of this task instance after this one fails."""
    return int(getattr(ti, "try_number", 1) or 1) <= int(getattr(ti, "max_tries", 0) or 0)


def _timeout_note(cancelled: bool) -> str:
    if cancelled:
        return "The run was cancelled (cancel_on_timeout=True); a retry starts a new run."
    return "The run was left running (cancel_on_timeout=False); a retry reattaches to it."


class PrefectRunDeploymentOperator(BaseOperator):
    """Trigger a Prefect deployment run, wait for it, and succeed or fail with it.

    Returns (XCom ``return_value``) the flow run id; also pushes XCom ``flow_run_id`` and
    ``flow_run_url`` as soon as the run exists (the "Prefect flow run" extra link opens the
    latter) and, when the run completed, ``flow_run_artifacts``: the run's keyed artifacts
    (``{key: data}``, tables as lists of rows) for downstream tasks.

    When the wait itself fails (Prefect unreachable for longer than ``unreachable_timeout``, a
    trigger error, Airflow's deferral timeout) the Prefect run is never left unobserved: if the
    task has a retry left it stays running and the next try reattaches to it; otherwise it is
    cancelled. A resume without a trigger event (``next_method`` still set on a re-run task)
    reattaches the same way.

    Idempotency: runs are keyed ``dag_id:run_id:task_id:map_index``, so a retry (or a worker
    crash) reattaches to the run already started instead of starting a second one. If that run
    ended Failed/Crashed/Cancelled, the retry starts a new run keyed ``...:try<N>``.

    :param deployment_name: ``"<flow name>/<deployment name>"``, e.g. ``"data-pipeline/daily"``.
    :param parameters: flow parameters (templated); values must be JSON-serialisable, other
        objects (dates) are sent as ``str()``.
    :param tags: extra tags for the flow run (templated), added to the deployment's tags.
    :param prefect_conn_id: Airflow connection to the Prefect API.
    :param poll_interval: longest wait between status checks, in seconds.
    :param timeout: how long to wait for a terminal state (``None``: forever).
    :param cancel_on_timeout: cancel the Prefect run when ``timeout`` passes. With ``False`` a
        retry of the task reattaches to the still-running run and keeps waiting.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param wait_for_completion: ``False`` returns right after the run is created.
    :param idempotency_key: override the base key (templated), e.g. to force one run per try.
    :param flow_run_name: name of the flow run (templated); Prefect picks one if unset.
    :param unreachable_timeout: how long the wait tolerates an unreachable Prefect API (e.g. a
        server restart) before it fails; ``None``: until ``timeout``.
    :param push_artifacts: push the completed run's artifacts as XCom ``flow_run_artifacts``.
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "parameters",
        "tags",
        "idempotency_key",
        "flow_run_name",
    )
    template_fields_renderers = {"parameters": "json"}
    operator_extra_links = (PrefectFlowRunLink(),)
    ui_color = "#2d6df6"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        deployment_name: str,
        parameters: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        prefect_conn_id: str = PrefectHook.default_conn_name,
        poll_interval: float = 10.0,
        timeout: timedelta | float | None = timedelta(hours=12),
        cancel_on_timeout: bool = True,
        deferrable: bool = False,
        wait_for_completion: bool = True,
        idempotency_key: str | None = None,
        flow_run_name: str | None = None,
        unreachable_timeout: timedelta | float | None = timedelta(minutes=10),
        push_artifacts: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0 seconds.")
        self.deployment_name = deployment_name
        self.parameters = parameters
        self.tags = list(tags) if tags is not None else None
        self.prefect_conn_id = prefect_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = timeout
        self.cancel_on_timeout = cancel_on_timeout
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self.idempotency_key = idempotency_key
        self.flow_run_name = flow_run_name
        self.unreachable_timeout = unreachable_timeout
        self.push_artifacts = push_artifacts
        self._flow_run_id: str | None = None
        self._finished = False

    @property
    def hook(self) -> PrefectHook:
        """A hook for ``prefect_conn_id`` (new per call: operators are pickled/copied)."""
        return PrefectHook(prefect_conn_id=self.prefect_conn_id)

    # -- execution -------------------------------------------------------------------------

    def execute(self, context: Any) -> str:
        """Create (or reattach to) the flow run, then wait in place or defer."""
        ti = context["ti"]
        hook = self.hook
        try:
            parameters = to_json_parameters(self.parameters)
            deployment = hook.get_deployment(self.deployment_name)
            base_key = self.idempotency_key or build_idempotency_key(
                ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)
            )
            try_number = int(getattr(ti, "try_number", 1) or 1)
            existing = hook.find_flow_runs(deployment["id"], candidate_keys(base_key, try_number))
            decision = choose_flow_run(existing, base_key, try_number)
            if decision.flow_run is not None:
                run = decision.flow_run
                self.log.info(
                    "Reattaching to Prefect flow run %s (%s, key %s) instead of starting another",
                    run.id,
                    run.state_name,
                    decision.key,
                )
            else:
                run, created = hook.create_flow_run(
                    deployment["id"],
                    parameters=parameters,
                    tags=self.tags,
                    idempotency_key=decision.key,
                    flow_run_name=self.flow_run_name,
                )
                self.log.info(
                    "%s Prefect flow run %s of %s (key %s)",
                    "Created" if created else "Reattached to",
                    run.id,
                    self.deployment_name,
                    decision.key,
                )
        except (PrefectInvalidRequestError, PrefectConfigurationError) as exc:
            # Same request, same answer: skip Airflow's retries.
            raise AirflowFailException(str(exc)) from exc

        self._flow_run_id = run.id
        url = hook.flow_run_url(run.id)
        ti.xcom_push(key="flow_run_id", value=run.id)
        ti.xcom_push(key=FLOW_RUN_URL_XCOM_KEY, value=url)
        self.log.info("Prefect flow run URL: %s", url)

        if not self.wait_for_completion:
            self._finished = True
            return run.id
        if run.is_terminal:
            return self._finish(context, run, url)

        timeout = _seconds(self.timeout)
        if self.deferrable:
            self.defer(
                trigger=PrefectFlowRunTrigger(
                    flow_run_id=run.id,
                    prefect_conn_id=self.prefect_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=None if timeout is None else time.time() + timeout,
                    cancel_on_timeout=self.cancel_on_timeout,
                    unreachable_timeout=_seconds(self.unreachable_timeout),
                ),
                method_name="execute_complete",
                timeout=None if timeout is None else timedelta(seconds=timeout) + _DEFER_GRACE,
            )

        try:
            final = hook.wait_for_flow_run(
                run.id,
                poll_interval=self.poll_interval,
                timeout=timeout,
                unreachable_timeout=_seconds(self.unreachable_timeout),
            )
        except PrefectFlowRunTimeout as exc:
            self._finished = True
            if self.cancel_on_timeout:
                hook.cancel_flow_run(run.id)
            raise PrefectFlowRunTimeout(
                f"{exc}\n{_timeout_note(self.cancel_on_timeout)}",
                flow_run_id=exc.flow_run_id,
                state_type=exc.state_type,
                state_name=exc.state_name,
                url=exc.url,
            ) from exc
        except PrefectBridgeError as exc:
            self._abandon_wait(context, run.id, str(exc), retryable=is_transient(exc), cause=exc)
        return self._finish(context, run=final, url=url)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: succeed, or raise with the state, message and URL.

        Without an event (the task instance still carried ``next_method`` when it was run again)
        there is nothing to report yet: reattach through the idempotency key, like a retry.
        """
        if event is None:
            self.log.info(
                "Resumed without a trigger event; reattaching to this task's Prefect flow run"
            )
            return self.execute(context)
        status = event.get("status")
        if status == "error":
            self._abandon_wait(
                context,
                str(event.get("flow_run_id") or ""),
                f"Waiting for Prefect flow run {event.get('flow_run_id')} failed "
                f"({event.get('error_type')}): {event.get('message')}",
                retryable=bool(event.get("retryable", True)),
            )
        run = FlowRun.from_api(event["flow_run"])
        url = str(event.get("url", ""))
        if status == "timeout":
            self._finished = True
            raise PrefectFlowRunTimeout(
                f"Prefect flow run '{run.name}' ({run.id}) is still {run.state_name} after "
                f"{_seconds(self.timeout):.0f}s. Run URL: {url}\n"
                f"{_timeout_note(bool(event.get('cancelled')))}",
                flow_run_id=run.id,
                state_type=run.state_type,
                state_name=run.state_name,
                url=url,
            )
        return self._finish(context, run, url)

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any
    ) -> Any:
        """Airflow's resume entry point; when Airflow itself ends the deferral, settle the run.

        A trigger that timed out (the deferral ``timeout``) or crashed resumes the task only to
        raise ``TaskDeferralTimeout``/``TaskDeferralError``; the Prefect run would go on with
        nobody watching, so it is cancelled or left for the next try first.
        """
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except (TaskDeferralTimeout, TaskDeferralError) as exc:
            flow_run_id = context["ti"].xcom_pull(task_ids=self.task_id, key="flow_run_id")
            if not flow_run_id:
                raise
            self._abandon_wait(
                context,
                str(flow_run_id),
                f"Airflow ended the deferred wait ({type(exc).__name__}: {exc})",
                retryable=True,
                cause=exc,
            )
            raise  # pragma: no cover (_abandon_wait always raises)

    def _abandon_wait(
        self,
        context: Any,
        flow_run_id: str,
        message: str,
        *,
        retryable: bool,
        cause: BaseException | None = None,
    ) -> NoReturn:
        """The wait failed before the run ended: leave the run for the next try, or cancel it."""
        self._finished = True
        ti = context["ti"]
        if retryable and _retries_left(ti):
            note = (
                f"The Prefect run {flow_run_id} was left running: try {ti.try_number + 1} of "
                "this task reattaches to it."
            )
            error: Exception = PrefectBridgeError(f"{message}\n{note}")
        else:
            try:
                self.hook.cancel_flow_run(flow_run_id)
                note = (
                    f"The Prefect run {flow_run_id} was cancelled: no try of this task is left "
                    "to watch it."
                )
            except PrefectBridgeError as cancel_exc:
                note = (
                    f"Cancelling Prefect run {flow_run_id} failed too ({cancel_exc}); cancel it "
                    "in the Prefect UI."
                )
            error = (
                PrefectBridgeError(f"{message}\n{note}")
                if retryable
                else AirflowFailException(f"{message}\n{note}")
            )
        self.log.error("%s", note)
        raise error from cause

    def _finish(self, context: Any, run: FlowRun, url: str) -> str:
        self._finished = True
        summary = describe_outcome(run, self.deployment_name, url)
        if run.is_unsuccessful:
            raise PrefectFlowRunFailed(
                summary,
                flow_run_id=run.id,
                state_type=run.state_type,
                state_name=run.state_name,
                url=url,
            )
        self.log.info(summary)
        if self.push_artifacts:
            context["ti"].xcom_push(
                key="flow_run_artifacts", value=self.hook.get_flow_run_artifacts(run.id)
            )
        return run.id

    def on_kill(self) -> None:
        """Cancel the Prefect run when Airflow kills this task while it waits."""
        if self._flow_run_id is None or self._finished:
            return
        self.log.info("Task killed; cancelling Prefect flow run %s", self._flow_run_id)
        self.hook.cancel_flow_run(self._flow_run_id)
