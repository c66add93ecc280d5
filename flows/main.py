"""The main flow: ingest -> transform -> index -> validate.

Run it ad hoc with ``semantic-index run`` or, from a checkout, ``python flows/main.py`` (embedded
defaults: no accounts, no servers), import it in a notebook (``from flows.main import
data_pipeline``) or deploy it from ``prefect.yaml``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run by path (`python flows/main.py`), Python puts flows/ on sys.path, not the checkout:
    # add the checkout, and import the package now so its offline defaults are applied before
    # Prefect is imported (Prefect reads its settings at import). The only such bootstrap.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.index import index
from flows.ingest import ingest
from flows.transform import transform
from tasks.errors import TransformError
from tasks.index.run import IndexResult
from tasks.ingest.load import IngestResult
from tasks.ops.report import run_stage
from tasks.ops.tasks import report_task, validate_task
from tasks.ops.validation import ValidationReport
from tasks.settings import get_settings
from tasks.transform.dbt import DbtResult


class PipelineParams(BaseModel):
    """Parameters of :func:`data_pipeline` (shown as a form in the Prefect UI)."""

    sources: list[str] | None = Field(
        default=None, description="Sources to load (names from the sources file); all if empty."
    )
    probe_query: str | None = Field(
        default=None, description="Query the validate step must find results for."
    )


@dataclass
class PipelineSummary:
    """What a run did, stage by stage."""

    ingest: list[IngestResult] = field(default_factory=list)
    dbt: DbtResult | None = None
    index: list[IndexResult] = field(default_factory=list)
    validation: ValidationReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    failed_stage: str | None = None
    error: str | None = None

    def to_text(self) -> str:
        """A short human-readable report."""
        lines = ["Pipeline summary"]
        rows = sum(r.rows for r in self.ingest)
        rejected = sum(r.rejected for r in self.ingest)
        lines.append(
            f"  ingest     {rows} rows loaded "
            + ", ".join(
                f"{r.source}.{t}={n}" for r in self.ingest for t, n in r.rows_by_table.items()
            )
            + (f"; {rejected} rejected (see the __rejected tables)" if rejected else "")
            + f"  ({self.seconds.get('ingest', 0):.1f}s)"
        )
        if self.dbt:
            lines.append(
                f"  transform  {self.dbt.models_built} models built, {self.dbt.tests_passed} "
                f"tests passed, {self.dbt.tests_failed} failed, {self.dbt.tests_warned} warned  "
                f"({self.seconds.get('transform', 0):.1f}s)"
            )
        for r in self.index:
            lines.append(
                f"  index      {r.namespace}: {r.documents} documents, {r.embedded} chunks "
                f"embedded, {r.unchanged} unchanged, {r.deleted} deleted, {r.vectors_in_store} "
                f"vectors stored, {r.dead_letters} rejected, {r.input_tokens} tokens "
                f"(~${r.estimated_cost_usd:.4f})  "
                f"({self.seconds.get('index', 0):.1f}s)"
            )
        if self.validation:
            passed = sum(1 for _, ok, _ in self.validation.checks if ok)
            lines.append(
                f"  validate   {passed}/{len(self.validation.checks)} checks passed  "
                f"({self.seconds.get('validate', 0):.1f}s)"
            )
        return "\n".join(lines)


# Four hours: far above a normal run; the "over-long run" alert fires much earlier (see
# `semantic-index setup`), this only stops a run that hangs.
@flow(name="data-pipeline", log_prints=True, timeout_seconds=4 * 3600)
def data_pipeline(
    params: PipelineParams | None = None, run_date: str | None = None
) -> PipelineSummary:
    """Load the sources, build the dbt models, index the documents and validate the result.

    ``run_date`` is the logical date a scheduler assigns to the run (Airflow's ``{{ ds }}`` from
    the bridge DAG); it is logged and tags nothing else: every run loads what its sources hold.

    Each stage emits ``pipeline.<stage>.completed`` (or ``.failed``) and the run ends with a
    report artifact, also when a stage failed (the error then names the stage).
    """
    get_settings()  # unusable settings fail here, before any stage starts
    params = params or PipelineParams()
    summary = PipelineSummary()
    if run_date:
        get_run_logger().info("Logical run date: %s", run_date)
    try:
        with run_stage(summary, "ingest"):
            summary.ingest = ingest(params.sources)
        with run_stage(summary, "transform"):
            try:
                summary.dbt = transform()
            except TransformError as exc:
                # The report's dbt-nodes table shows failed builds too (which node failed).
                summary.dbt = exc.result if isinstance(exc.result, DbtResult) else None
                raise
        with run_stage(summary, "index"):
            summary.index = index()
        with run_stage(summary, "validate"):
            summary.validation = validate_task(summary.index, summary.dbt, params.probe_query)
    except Exception:  # not on cancellation/interrupt: nothing should delay those
        try:
            report_task(summary)
        except Exception:  # the stage's error is the one to raise; this one is only logged
            get_run_logger().exception("Could not publish the run report")
        raise
    report_task(summary)
    return summary


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
