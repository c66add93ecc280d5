"""The run report and stage bookkeeping of the main flow.

:func:`run_stage` times a stage, emits ``pipeline.<stage>.completed`` / ``pipeline.<stage>.failed``
events (other deployments and automations react to them) and turns an error into
:class:`StageFailed`, whose message names the stage: alerts show it as "the failing stage".

:func:`publish_run_report` writes the Prefect artifacts of a run: one markdown summary and tables
(rows per source and table, ``<table>__rejected`` ones included, dbt nodes, index counts with
tokens and estimated cost, validation checks, seconds per stage); the summary counts the rejected
rows (quarantined records, dead-letter pages) and the chunks the embedding provider rejected
(the index's dead letters).
Everything here reads counts and names only: no setting, URL or secret ends up in a report.

The report and every event also carry the run's versions (:mod:`tasks.ops.versions`: package
version, git commit, sources file hash, dbt manifest hash and project version, index
fingerprint): hashes and version strings, no paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from tasks.errors import PipelineError
from tasks.retry import is_transient

logger = logging.getLogger(__name__)

#: Resource every pipeline event is about (automations match on it).
EVENT_RESOURCE = {"prefect.resource.id": "semantic-pipeline", "prefect.resource.name": "pipeline"}

#: Artifact keys (stable, so the UI shows the history of each across runs).
ARTIFACT_KEYS = {
    "summary": "pipeline-report",
    "rows": "pipeline-rows-loaded",
    "dbt": "pipeline-dbt-nodes",
    "index": "pipeline-index",
    "validation": "pipeline-validation",
    "durations": "pipeline-durations",
    "versions": "pipeline-versions",
}


class StageFailed(PipelineError):
    """A stage of the main flow failed; the message says which and why."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        self.retryable = is_transient(cause)
        super().__init__(f"Stage '{stage}' failed: {type(cause).__name__}: {cause}")


class RunSummary(Protocol):
    """What :func:`publish_run_report` reads (``flows.main.PipelineSummary``)."""

    ingest: list[Any]
    dbt: Any
    index: list[Any]
    validation: Any
    seconds: dict[str, float]
    failed_stage: str | None
    error: str | None


def run_versions(summary: RunSummary | None = None) -> dict[str, str | None]:
    """The versions of this run (:func:`tasks.ops.versions.collect_versions` with the current
    settings), with the index fingerprint of ``summary``'s index results when it has some."""
    from tasks.ops.versions import collect_versions
    from tasks.settings import get_settings

    index = summary.index if summary is not None else []
    fingerprint = next((r.fingerprint for r in index if getattr(r, "fingerprint", "")), None)
    return collect_versions(get_settings(), fingerprint).as_dict()


def emit_stage_event(stage: str, outcome: str, payload: dict[str, Any]) -> None:
    """Emit ``pipeline.<stage>.<outcome>``; inside a run Prefect relates it to the flow run.

    The payload gains the run's ``versions`` (:func:`run_versions`) unless it has them.
    """
    from prefect.events import emit_event

    if "versions" not in payload:
        payload = {**payload, "versions": run_versions()}
    emit_event(event=f"pipeline.{stage}.{outcome}", resource=EVENT_RESOURCE, payload=payload)


@contextmanager
def run_stage(summary: RunSummary, stage: str) -> Iterator[None]:
    """Time ``stage`` into ``summary.seconds``, emit its event, and wrap its error.

    Raises:
        StageFailed: the stage raised; chained to the original error.
    """
    start = time.monotonic()
    try:
        yield
    except Exception as exc:
        summary.seconds[stage] = time.monotonic() - start
        summary.failed_stage = stage
        failure = StageFailed(stage, exc)
        summary.error = str(failure)
        payload = {"error": str(failure)[:2000], "versions": run_versions(summary)}
        emit_stage_event(stage, "failed", payload)
        raise failure from exc
    summary.seconds[stage] = time.monotonic() - start
    emit_stage_event(stage, "completed", stage_payload(summary, stage))


def stage_payload(summary: RunSummary, stage: str) -> dict[str, Any]:
    """The counts an event of ``stage`` carries."""
    payload: dict[str, Any] = {
        "seconds": round(summary.seconds.get(stage, 0.0), 3),
        "versions": run_versions(summary),
    }
    if stage == "ingest":
        payload["rows"] = {r.source: dict(r.rows_by_table) for r in summary.ingest}
        payload["total_rows"] = sum(r.rows for r in summary.ingest)
        payload["rejected"] = sum(getattr(r, "rejected", 0) for r in summary.ingest)
    elif stage == "transform" and summary.dbt is not None:
        payload.update(
            models_built=summary.dbt.models_built,
            tests_passed=summary.dbt.tests_passed,
            tests_failed=summary.dbt.tests_failed,
        )
    elif stage == "index":
        payload["namespaces"] = {r.namespace: index_row(r) for r in summary.index}
    elif stage == "validate" and summary.validation is not None:
        payload["checks"] = len(summary.validation.checks)
        payload["failed"] = sum(1 for _, ok, _ in summary.validation.checks if not ok)
    return payload


def index_row(r: Any) -> dict[str, Any]:
    """One namespace's counts (``IndexResult``) as a table row."""
    return {
        "namespace": r.namespace,
        "model": r.model,
        "documents": r.documents,
        "chunks": r.chunks,
        "embedded (new or changed)": r.embedded,
        "unchanged": r.unchanged,
        "deleted": r.deleted,
        "vectors in store": r.vectors_in_store,
        # Chunks the embedding provider rejected: not indexed, retried by the next run.
        "dead letters": getattr(r, "dead_letters", 0),
        # Filled by the indexer when it knows them (tokens sent, provider price estimate).
        "cache hits": getattr(r, "cache_hits", 0),
        "input tokens": getattr(r, "input_tokens", 0),
        "estimated cost (USD)": round(float(getattr(r, "estimated_cost_usd", 0.0)), 6),
        # Which ledger run (index_state.runs) and configuration wrote it: `semantic-index diff`.
        "run id": getattr(r, "run_id", None),
        "fingerprint": getattr(r, "fingerprint", ""),
    }


def report_tables(
    summary: RunSummary, versions: dict[str, str | None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The report's tables, keyed like :data:`ARTIFACT_KEYS` (pure: tested without Prefect);
    ``versions`` (:func:`run_versions`) become the ``versions`` table."""
    tables: dict[str, list[dict[str, Any]]] = {
        "rows": [
            {"source": r.source, "table": table, "rows": n}
            for r in summary.ingest
            for table, n in sorted(r.rows_by_table.items())
        ],
        "dbt": [dict(node) for node in (summary.dbt.nodes if summary.dbt is not None else [])],
        "index": [index_row(r) for r in summary.index],
        "validation": [
            {"check": name, "passed": ok, "detail": detail}
            for name, ok, detail in (summary.validation.checks if summary.validation else [])
        ],
        "durations": [
            {"stage": stage, "seconds": round(seconds, 2)}
            for stage, seconds in summary.seconds.items()
        ],
        "versions": [{"field": k, "value": v} for k, v in (versions or {}).items()],
    }
    return tables


def report_markdown(summary: RunSummary, versions: dict[str, str | None] | None = None) -> str:
    """The markdown summary artifact (with a line of ``versions`` when given)."""
    ok = summary.failed_stage is None
    lines = [f"# Pipeline run: {'succeeded' if ok else 'FAILED'}", ""]
    if not ok:
        lines += [f"**Failed stage:** `{summary.failed_stage}`", "", f"> {summary.error}", ""]
    rows = sum(r.rows for r in summary.ingest)
    lines.append("| stage | result | seconds |")
    lines.append("| --- | --- | ---: |")
    if "ingest" in summary.seconds:
        # Quarantined records and dead-letter pages, in the <table>__rejected tables.
        rejected = sum(getattr(r, "rejected", 0) for r in summary.ingest)
        lines.append(
            f"| ingest | {rows} rows from {len(summary.ingest)} source(s), {rejected} rejected | "
            f"{summary.seconds['ingest']:.1f} |"
        )
    if "transform" in summary.seconds:
        dbt = summary.dbt
        text = (
            f"{dbt.models_built} models built, {dbt.tests_passed} tests passed, "
            f"{dbt.tests_failed} failed"
            if dbt is not None
            else "failed"
        )
        lines.append(f"| transform | {text} | {summary.seconds['transform']:.1f} |")
    if "index" in summary.seconds:
        text = (
            "; ".join(
                f"{r.namespace}: {r.embedded} embedded, {r.unchanged} unchanged, "
                f"{r.deleted} deleted, {r.vectors_in_store} in store, "
                f"{getattr(r, 'dead_letters', 0)} rejected, "
                f"{getattr(r, 'input_tokens', 0)} tokens "
                f"(~${float(getattr(r, 'estimated_cost_usd', 0.0)):.4f})"
                for r in summary.index
            )
            or "failed"
        )
        lines.append(f"| index | {text} | {summary.seconds['index']:.1f} |")
    if "validate" in summary.seconds:
        checks = summary.validation.checks if summary.validation else []
        passed = sum(1 for _, good, _ in checks)
        text = f"{passed}/{len(checks)} checks passed" if summary.validation else "failed"
        lines.append(f"| validate | {text} | {summary.seconds['validate']:.1f} |")
    if versions:
        known = ", ".join(f"{k} `{v}`" for k, v in versions.items() if v is not None)
        lines += ["", f"**Versions:** {known or 'none known'}"]
    lines += ["", "Tables: " + ", ".join(f"`{k}`" for k in list(ARTIFACT_KEYS.values())[1:])]
    return "\n".join(lines)


def publish_run_report(summary: RunSummary) -> None:
    """Write the markdown summary and the tables as artifacts of the current flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    versions = run_versions(summary)
    create_markdown_artifact(
        key=ARTIFACT_KEYS["summary"],
        markdown=report_markdown(summary, versions),
        description="Pipeline run summary",
    )
    for name, rows in report_tables(summary, versions).items():
        if rows:
            create_table_artifact(
                key=ARTIFACT_KEYS[name], table=rows, description=f"Pipeline run: {name}"
            )
    logger.info("Run report published (%s)", ", ".join(ARTIFACT_KEYS.values()))
