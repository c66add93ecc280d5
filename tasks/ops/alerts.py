"""Server-side setup for operations: work pool, concurrency limits, alert block and automations.

Everything is idempotent (re-running replaces what it created) and lives on the Prefect server,
so alerts fire for every worker and even when a run crashes before its own code could react.

* Work pool ``<name>`` of type ``process`` (docker/kubernetes variants: ``deployments/``).
* Global concurrency limit ``EMBEDDING_CONCURRENCY_LIMIT`` held by the index flow while it embeds.
* A ``Custom Webhook`` notification block posting ``{"text": ...}`` (Slack's incoming-webhook
  shape; Mattermost, Rocket.Chat, Teams workflows and Discord's ``/slack`` endpoint accept it).
  The webhook URL is stored in the block's secret fields, never in plain config or logs.
* Automations on runs of deployments tagged :data:`PIPELINE_TAG`: one for Failed, Crashed and
  TimedOut, one for a run still Running after ``max_run_minutes``; and one for the index
  doctor's ``pipeline.index.drift`` event (the store no longer matches the ledger).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

#: Every deployment in prefect.yaml carries this tag; automations match on it.
PIPELINE_TAG = "semantic-pipeline"
ALERT_BLOCK_NAME = "pipeline-alerts"
FAILURE_AUTOMATION = "semantic-pipeline: run failed"
OVERLONG_AUTOMATION = "semantic-pipeline: run too long"
DRIFT_AUTOMATION = "semantic-pipeline: index drift"
#: The event the index doctor emits when a store differs from the ledger (flows/doctor.py).
DRIFT_EVENT = "pipeline.index.drift"

FAILED_EVENTS = ["prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"]
FINAL_EVENTS = [
    "prefect.flow-run.Completed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Cancelling",
    *FAILED_EVENTS,
]

FAILURE_SUBJECT = "Pipeline alert: {{ flow.name }} {{ flow_run.state.name }}"
#: Jinja rendered by the Prefect server: the flow, the failing stage with the error (the state
#: message of data-pipeline reads "Stage '<stage>' failed: ..."), and a link to the run.
FAILURE_BODY = """\
Flow: {{ flow.name }}
Deployment: {{ deployment.name }}
Run: {{ flow_run.name }} is {{ flow_run.state.name }}
Failing stage and error: {{ flow_run.state.message }}
Run link: {{ flow_run|ui_url }}"""

OVERLONG_SUBJECT = "Pipeline alert: {{ flow.name }} is running too long"
OVERLONG_BODY = """\
Flow: {{ flow.name }}
Deployment: {{ deployment.name }}
Run: {{ flow_run.name }} has been running for more than {limit}
Run link: {{ flow_run|ui_url }}"""

DRIFT_SUBJECT = "Pipeline alert: the vector index drifted from its ledger"
#: Jinja over the event's payload (tasks/index/doctor.py DoctorReport.payload per namespace).
DRIFT_BODY = """\
{% for n in event.payload.namespaces %}Namespace {{ n.namespace }} ({{ n.physical_namespace }}): \
{% for kind, count in n.counts.items() if count %}{{ count }} {{ kind }} {% endfor %}
{% endfor %}Repaired: {{ event.payload.repaired }}. \
To repair from the embedding cache: semantic-index doctor --repair"""


@dataclass
class SetupResult:
    """What :func:`setup_operations` created or updated."""

    work_pool: str
    concurrency_limits: dict[str, int] = field(default_factory=dict)
    block_id: UUID | None = None
    automations: list[str] = field(default_factory=list)


def webhook_block(url: str) -> Any:
    """A Slack-compatible webhook notification block; the URL is kept as a secret value."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.types import SecretDict

    return CustomWebhookNotificationBlock(
        name=ALERT_BLOCK_NAME,
        url="{{webhook_url}}",
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}"},
        headers=None,
        cookies=None,
        secrets=SecretDict({"webhook_url": url}),
        timeout=10,
    )


def _tagged_runs(tag: str = PIPELINE_TAG) -> dict[str, Any]:
    return {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}


def _duration(limit: timedelta) -> str:
    """``30 minutes``, ``1 minute``, ``5 seconds``: the limit as the alert says it."""
    seconds = int(limit.total_seconds())
    value, unit = (seconds // 60, "minute") if seconds % 60 == 0 else (seconds, "second")
    return f"{value} {unit}{'' if value == 1 else 's'}"


def failure_automation(block_id: UUID) -> Any:
    """Notify on Failed, Crashed or TimedOut runs of the pipeline's deployments."""
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    return AutomationCore(
        name=FAILURE_AUTOMATION,
        description="Post the failing flow, stage, error and run link to the alert webhook.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tagged_runs(),
            expect=set(FAILED_EVENTS),
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=block_id, subject=FAILURE_SUBJECT, body=FAILURE_BODY)
        ],
    )


def overlong_automation(
    block_id: UUID,
    limit: timedelta,
    *,
    tag: str = PIPELINE_TAG,
    name: str = OVERLONG_AUTOMATION,
) -> Any:
    """Notify when a run tagged ``tag`` is still running ``limit`` after it started.

    A proactive trigger: the server starts a window at the run's Running event and fires when
    no final state (Completed, Failed, Cancelled, ...) arrived within it.
    """
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    return AutomationCore(
        name=name,
        description=f"A pipeline run has not finished {_duration(limit)} after starting.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tagged_runs(tag),
            after={"prefect.flow-run.Running"},
            expect=set(FINAL_EVENTS),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=limit,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=OVERLONG_SUBJECT,
                body=OVERLONG_BODY.replace("{limit}", _duration(limit)),
            )
        ],
    )


def drift_automation(block_id: UUID) -> Any:
    """Notify when the index doctor finds a store that differs from the ledger."""
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    return AutomationCore(
        name=DRIFT_AUTOMATION,
        description="Post the drifting namespaces and what differs to the alert webhook.",
        trigger=EventTrigger(
            expect={DRIFT_EVENT},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=block_id, subject=DRIFT_SUBJECT, body=DRIFT_BODY)
        ],
    )


def setup_operations(
    *,
    work_pool: str,
    concurrency_limits: dict[str, int],
    webhook_url: str | None,
    max_run_minutes: int,
) -> SetupResult:
    """Create or update the work pool, limits, alert block and automations on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    result = SetupResult(work_pool=work_pool)
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=work_pool,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            ),
            overwrite=True,
        )
        logger.info("Work pool %s (process) ready", work_pool)

        for name, limit in concurrency_limits.items():
            client.upsert_global_concurrency_limit_by_name(name=name, limit=limit)
            result.concurrency_limits[name] = limit
            logger.info("Global concurrency limit %s = %d", name, limit)

        for name in (FAILURE_AUTOMATION, OVERLONG_AUTOMATION, DRIFT_AUTOMATION):
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)
        if webhook_url is None:
            logger.warning("No ALERT_WEBHOOK_URL: alert automations not created")
            return result

        result.block_id = webhook_block(webhook_url).save(ALERT_BLOCK_NAME, overwrite=True)
        for automation in (
            failure_automation(result.block_id),
            overlong_automation(result.block_id, timedelta(minutes=max_run_minutes)),
            drift_automation(result.block_id),
        ):
            client.create_automation(automation)
            result.automations.append(automation.name)
            logger.info("Automation %r created", automation.name)
    return result
