"""Trigger that waits for a Prefect flow run in Airflow's triggerer instead of a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from prefect_airflow_bridge.core import PollSchedule, flow_run_url
from prefect_airflow_bridge.exceptions import PrefectBridgeError, PrefectConfigurationError
from prefect_airflow_bridge.hooks import PrefectHook, is_transient


class PrefectFlowRunTrigger(BaseTrigger):
    """Poll a Prefect flow run until it is terminal or ``deadline`` passes, then fire once.

    Event payload ``status`` is ``"terminal"`` (with ``flow_run``), ``"timeout"`` (with
    ``flow_run`` and ``cancelled``) or ``"error"`` (with ``message``, ``error_type`` and
    ``retryable``). Every failure inside the trigger becomes an ``"error"`` event, so the
    operator's ``execute_complete`` always decides what happens to the Prefect run (cancel it, or
    leave it for the next try to reattach to) instead of a bare trigger traceback leaving it
    running unobserved.

    While the Prefect API is unreachable (a server restart) the wait goes on for
    ``unreachable_timeout`` seconds. When a user kills the deferred task (mark failed/success,
    clear), Airflow 3.3+ calls :meth:`on_kill`, which cancels the Prefect run; a triggerer restart
    does not (the trigger is just moved to another triggerer and resumes polling).

    :param flow_run_id: Prefect flow run to watch.
    :param prefect_conn_id: Airflow connection to the Prefect API.
    :param poll_interval: longest wait between status checks, in seconds.
    :param deadline: Unix time after which the wait times out (``None``: wait forever).
    :param cancel_on_timeout: cancel the Prefect run when the deadline passes.
    :param unreachable_timeout: seconds the API may stay unreachable (``None``: until deadline).
    """

    def __init__(
        self,
        flow_run_id: str,
        prefect_conn_id: str = PrefectHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_timeout: bool = True,
        unreachable_timeout: float | None = 600.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger has no hints
        self.flow_run_id = flow_run_id
        self.prefect_conn_id = prefect_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_timeout = cancel_on_timeout
        self.unreachable_timeout = unreachable_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and kwargs that recreate this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flow_run_id": self.flow_run_id,
                "prefect_conn_id": self.prefect_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_timeout": self.cancel_on_timeout,
                "unreachable_timeout": self.unreachable_timeout,
            },
        )

    def _hook(self) -> PrefectHook:
        return PrefectHook(prefect_conn_id=self.prefect_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll (1 s doubling up to ``poll_interval``) and yield exactly one event."""
        try:
            event = await self._wait()
        except Exception as exc:  # handed to execute_complete, which cancels or leaves the run
            self.log.exception("Waiting for Prefect flow run %s failed", self.flow_run_id)
            event = {
                "status": "error",
                "flow_run_id": self.flow_run_id,
                "message": str(exc) or repr(exc),
                "error_type": type(exc).__name__,
                "retryable": not isinstance(exc, PrefectConfigurationError),
            }
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]  # no hints in Airflow

    async def _wait(self) -> dict[str, Any]:
        hook = self._hook()
        ui_url = (await hook.aget_config()).ui_url
        schedule = PollSchedule(
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            unreachable_timeout=self.unreachable_timeout,
        )
        while True:
            try:
                run = await hook.aget_flow_run(self.flow_run_id)
            except PrefectBridgeError as exc:
                if not schedule.rides_out(is_transient(exc), time.time()):
                    raise
                self.log.warning(
                    "Prefect API unreachable while waiting for flow run %s; still waiting: %s",
                    self.flow_run_id,
                    exc,
                )
            else:
                schedule.reached()
                url = flow_run_url(ui_url, run.id)
                if run.is_terminal:
                    return {"status": "terminal", "flow_run": run.to_dict(), "url": url}
                if schedule.timed_out(time.time()):
                    cancelled = False
                    if self.cancel_on_timeout:
                        await hook.acancel_flow_run(run.id)
                        cancelled = True
                    return {
                        "status": "timeout",
                        "flow_run": run.to_dict(),
                        "url": url,
                        "cancelled": cancelled,
                    }
                self.log.debug("Prefect flow run %s is %s", run.id, run.state_name)
            await asyncio.sleep(schedule.next_sleep(time.time()))

    async def on_kill(self) -> None:
        """Cancel the Prefect run: the user killed the deferred Airflow task."""
        self.log.info("Deferred task killed; cancelling Prefect flow run %s", self.flow_run_id)
        await self._hook().acancel_flow_run(self.flow_run_id)
