"""Trigger that waits for a Prefect flow run in Airflow's triggerer instead of a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from prefect_airflow_bridge.core import flow_run_url
from prefect_airflow_bridge.exceptions import PrefectBridgeError
from prefect_airflow_bridge.hooks import PrefectHook


class PrefectFlowRunTrigger(BaseTrigger):
    """Poll a Prefect flow run until it is terminal or ``deadline`` passes, then fire once.

    Event payload ``status`` is ``"terminal"`` (with ``flow_run``), ``"timeout"`` (with
    ``flow_run`` and ``cancelled``) or ``"error"`` (with ``message``). When a user kills the
    deferred task (mark failed/success, clear), Airflow 3.3+ calls :meth:`on_kill`, which
    cancels the Prefect run; a triggerer restart does not (the trigger is just moved).

    :param flow_run_id: Prefect flow run to watch.
    :param prefect_conn_id: Airflow connection to the Prefect API.
    :param poll_interval: longest wait between status checks, in seconds.
    :param deadline: Unix time after which the wait times out (``None``: wait forever).
    :param cancel_on_timeout: cancel the Prefect run when the deadline passes.
    """

    def __init__(
        self,
        flow_run_id: str,
        prefect_conn_id: str = PrefectHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_timeout: bool = True,
    ) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id
        self.prefect_conn_id = prefect_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_timeout = cancel_on_timeout

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
            },
        )

    def _hook(self) -> PrefectHook:
        return PrefectHook(prefect_conn_id=self.prefect_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll (1 s doubling up to ``poll_interval``) and yield exactly one event."""
        hook = self._hook()
        delay = min(1.0, self.poll_interval)
        try:
            while True:
                run = await hook.aget_flow_run(self.flow_run_id)
                url = flow_run_url((await hook.aget_config()).ui_url, run.id)
                if run.is_terminal:
                    yield TriggerEvent(
                        {"status": "terminal", "flow_run": run.to_dict(), "url": url}
                    )
                    return
                if self.deadline is not None and time.time() >= self.deadline:
                    cancelled = False
                    if self.cancel_on_timeout:
                        await hook.acancel_flow_run(run.id)
                        cancelled = True
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "flow_run": run.to_dict(),
                            "url": url,
                            "cancelled": cancelled,
                        }
                    )
                    return
                remaining = None if self.deadline is None else self.deadline - time.time()
                sleep_for = delay if remaining is None else min(delay, max(remaining, 0.0))
                self.log.debug(
                    "Prefect flow run %s is %s; next check in %.1fs",
                    run.id,
                    run.state_name,
                    sleep_for,
                )
                await asyncio.sleep(sleep_for)
                delay = min(delay * 2, self.poll_interval)
        except PrefectBridgeError as exc:
            # Surface the bridge's own advice through execute_complete instead of a bare
            # trigger traceback; transient errors were already retried by the hook.
            yield TriggerEvent(
                {
                    "status": "error",
                    "flow_run_id": self.flow_run_id,
                    "message": str(exc),
                    "error_type": type(exc).__name__,
                }
            )

    async def on_kill(self) -> None:
        """Cancel the Prefect run: the user killed the deferred Airflow task."""
        self.log.info("Deferred task killed; cancelling Prefect flow run %s", self.flow_run_id)
        await self._hook().acancel_flow_run(self.flow_run_id)
