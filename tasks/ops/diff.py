"""What changed between two indexing runs (``semantic-index diff RUN_A RUN_B``).

Both runs are rows of the ledger's ``runs`` table (:mod:`tasks.index.ledger`). The diff says:

- **config**: the embedder, model, index fingerprint, chunker settings and physical namespace
  that differ;
- **versions**: package version, git commit and sources file hash that differ;
- **models**: the dbt manifest hash and project version, changed or not;
- **documents**: added, changed (text or metadata) and deleted between the two runs, from each
  run's ``documents`` digest (what the namespace held when the run ended);
- **cost**: each run's tokens and estimated cost and, for two runs of one logical namespace, the
  total of the runs after RUN_A up to RUN_B (what getting from one to the other cost).

Pure once both rows are read (:func:`compare`); :func:`diff_runs` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from tasks.errors import PipelineError
from tasks.index.ledger import Ledger, RunRecord

#: Version fields that describe the models (shown as "models"); the others are "versions".
MODEL_FIELDS = ("dbt_manifest_hash", "dbt_project_version")

#: Document ids per kind the text output lists (``--json`` lists them all).
TEXT_EXAMPLES = 10


class UnknownRun(PipelineError):
    """A run id the ledger does not know."""


@dataclass(frozen=True)
class Usage:
    """Embedding requests' tokens and estimated cost of a span of runs."""

    runs: int
    input_tokens: int
    estimated_cost_usd: float


@dataclass(frozen=True)
class RunDiff:
    """The differences between run :attr:`a` and run :attr:`b`."""

    a: RunRecord
    b: RunRecord
    #: ``{field: (value in a, value in b)}`` of config fields that differ.
    config: dict[str, tuple[Any, Any]]
    #: The same for package version, git commit and sources file hash.
    versions: dict[str, tuple[Any, Any]]
    #: ``{field: (a, b)}`` of :data:`MODEL_FIELDS`, whether they differ or not.
    models: dict[str, tuple[Any, Any]]
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Both runs recorded their documents (rows from before the digest existed did not).
    documents_known: bool = True
    #: Runs after :attr:`a` up to :attr:`b` of the same logical namespace (``None``: other
    #: namespaces, or ``b`` is not after ``a``).
    between: Usage | None = None

    @property
    def models_changed(self) -> bool:
        """The dbt models differ (manifest hash or project version)."""
        return any(x != y for x, y in self.models.values())

    def as_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values (``--json``)."""

        def pairs(values: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
            return {k: {"a": x, "b": y} for k, (x, y) in values.items()}

        return {
            "a": _run_summary(self.a),
            "b": _run_summary(self.b),
            "config": pairs(self.config),
            "versions": pairs(self.versions),
            "models": {"changed": self.models_changed, **pairs(self.models)},
            "documents": (
                {
                    "added": self.added,
                    "changed": self.changed,
                    "deleted": self.deleted,
                    "a": len(self.a.documents or {}),
                    "b": len(self.b.documents or {}),
                }
                if self.documents_known
                else None
            ),
            "between": None if self.between is None else vars(self.between),
        }

    def to_text(self) -> str:
        """Lines for people (the default output)."""
        a, b = self.a, self.b
        lines = [
            f"Run {a.run_id} ({a.logical_namespace} -> {a.namespace}, {a.status}, "
            f"{a.started_at:%Y-%m-%d %H:%M}) vs run {b.run_id} ({b.logical_namespace} -> "
            f"{b.namespace}, {b.status}, {b.started_at:%Y-%m-%d %H:%M})"
        ]
        for title, values in (("config", self.config), ("versions", self.versions)):
            if not values:
                lines.append(f"{title}: unchanged")
                continue
            lines.append(f"{title}:")
            lines += [f"  {k}: {_show(x)} -> {_show(y)}" for k, (x, y) in values.items()]
        if self.models_changed:
            lines.append("models: changed")
            lines += [
                f"  {k}: {_show(x)} -> {_show(y)}" for k, (x, y) in self.models.items() if x != y
            ]
        else:
            shown = ", ".join(f"{k} {_show(x)}" for k, (x, _) in self.models.items())
            lines.append(f"models: unchanged ({shown})")
        if not self.documents_known:
            lines.append("documents: not recorded by one of the runs (older ledger rows)")
        else:
            lines.append(
                f"documents: {len(self.added)} added, {len(self.changed)} changed, "
                f"{len(self.deleted)} deleted ({len(a.documents or {})} -> "
                f"{len(b.documents or {})})"
            )
            for kind, ids in (
                ("added", self.added),
                ("changed", self.changed),
                ("deleted", self.deleted),
            ):
                if ids:
                    hidden = len(ids) - TEXT_EXAMPLES
                    more = f", ... ({hidden} more)" if hidden > 0 else ""
                    lines.append(f"  {kind}: {', '.join(ids[:TEXT_EXAMPLES])}{more}")
        lines.append(
            "cost: "
            + "; ".join(
                f"run {r.run_id} {r.input_tokens or 0} tokens (~${r.estimated_cost_usd or 0.0:.4f})"
                for r in (a, b)
            )
        )
        if self.between is not None:
            u = self.between
            lines.append(
                f"  runs after {a.run_id} up to {b.run_id}: {u.runs} run(s), "
                f"{u.input_tokens} tokens (~${u.estimated_cost_usd:.4f})"
            )
        return "\n".join(lines)


def compare(a: RunRecord, b: RunRecord, between: Usage | None = None) -> RunDiff:
    """The diff of two ``runs`` rows (pure)."""
    config = _differing(_config_fields(a), _config_fields(b))
    versions = _differing(
        {k: v for k, v in a.versions.items() if k not in MODEL_FIELDS},
        {k: v for k, v in b.versions.items() if k not in MODEL_FIELDS},
    )
    models = {k: (a.versions.get(k), b.versions.get(k)) for k in MODEL_FIELDS}
    known = a.documents is not None and b.documents is not None
    docs_a, docs_b = a.documents or {}, b.documents or {}
    return RunDiff(
        a=a,
        b=b,
        config=config,
        versions=versions,
        models=models,
        added=sorted(docs_b.keys() - docs_a.keys()),
        changed=sorted(d for d in docs_a.keys() & docs_b.keys() if docs_a[d] != docs_b[d]),
        deleted=sorted(docs_a.keys() - docs_b.keys()),
        documents_known=known,
        between=between,
    )


def diff_runs(ledger: Ledger, run_a: int, run_b: int) -> RunDiff:
    """Read runs ``run_a`` and ``run_b`` from the ledger and compare them.

    Raises:
        UnknownRun: either id is not in ``<INDEX_STATE_SCHEMA>.runs``.
    """
    try:
        ledger.setup()  # adds the version columns to a ledger from before them
        a, b = ledger.run(run_a), ledger.run(run_b)
    except psycopg.errors.UndefinedTable:
        a = b = None
    for run_id, record in ((run_a, a), (run_b, b)):
        if record is None:
            raise UnknownRun(
                f"No indexing run {run_id} in {ledger.schema}.runs. Run ids are the `run_id` "
                f"column of that table (`select run_id, logical_namespace, started_at, status "
                f"from {ledger.schema}.runs order by run_id`) and the index report's `run id`."
            )
    assert a is not None and b is not None
    between = None
    if a.logical_namespace == b.logical_namespace and a.run_id < b.run_id:
        between = Usage(*ledger.usage_between(a.logical_namespace, a.run_id, b.run_id))
    return compare(a, b, between)


def _config_fields(run: RunRecord) -> dict[str, Any]:
    """The run's configuration, flattened (``chunker.max_tokens``, ``embedder.model``...)."""
    out: dict[str, Any] = {
        "logical_namespace": run.logical_namespace,
        "namespace": run.namespace,
        "provider": run.provider,
        "model": run.model,
        "fingerprint": run.fingerprint,
    }
    for group, values in (run.index_config or {}).items():
        if isinstance(values, dict):
            out.update({f"{group}.{k}": v for k, v in values.items()})
        else:
            out[group] = values
    return out


def _differing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _run_summary(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "logical_namespace": run.logical_namespace,
        "namespace": run.namespace,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
        "chunks": run.chunks,
        "embedded": run.embedded,
        "deleted": run.deleted,
        "input_tokens": run.input_tokens,
        "estimated_cost_usd": run.estimated_cost_usd,
        "versions": run.versions,
    }


def _show(value: Any) -> str:
    return "-" if value is None else str(value)
