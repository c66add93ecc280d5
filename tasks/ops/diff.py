"""What changed between two indexing runs (``semantic-index diff RUN_A RUN_B``).

Both runs are rows of the ledger's ``runs`` table (:mod:`tasks.index.ledger`). The diff says:

- **config**: the embedder, model, index fingerprint, chunker settings and physical namespace
  that differ;
- **versions**: package version, git commit and sources file hash that differ;
- **models**: the dbt manifest hash and project version, changed or not;
- **documents**: added, changed (text or metadata) and deleted between the two runs: the net
  effect of the changes the runs after RUN_A up to RUN_B recorded (the ledger's
  ``run_documents``, composed in SQL by :meth:`Ledger.net_changes`), so its cost follows what
  changed, not the corpus. Across a rebuild (the runs write different physical namespaces) it is
  the changes made to RUN_B's physical namespace (a rebuild's first run adds every document to
  its new namespace), and says so. Two runs from before ``run_documents`` compare their
  ``documents`` snapshots as they used to;
- **cost**: each run's tokens and estimated cost and, for two runs of one logical namespace, the
  total of the runs after RUN_A up to RUN_B (what getting from one to the other cost).

Pure once the rows and changes are read (:func:`compare`); :func:`diff_runs` reads them.
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
    #: The document changes are known (runs from before ``run_documents`` without both
    #: snapshots, or runs of two logical namespaces, leave them unknown).
    documents_known: bool = True
    #: Documents in the namespace after each run (``None``: not recorded).
    documents_a: int | None = None
    documents_b: int | None = None
    #: The physical namespace the document changes are relative to, when the runs wrote
    #: different ones (a rebuild); ``None``: the same namespace.
    relative_to: str | None = None
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
                    "a": self.documents_a,
                    "b": self.documents_b,
                    "relative_to": self.relative_to,
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
                f"{len(self.deleted)} deleted ({_show(self.documents_a, '?')} -> "
                f"{_show(self.documents_b, '?')})"
            )
            if self.relative_to is not None:
                lines.append(
                    f"  (the runs wrote different physical namespaces: these are the changes "
                    f"made to {self.relative_to}; a rebuild's first run adds every document)"
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


@dataclass(frozen=True)
class Changes:
    """The net document changes between two runs (:meth:`Ledger.net_changes`), ids sorted."""

    added: list[str]
    changed: list[str]
    deleted: list[str]
    #: The physical namespace they apply to when the two runs wrote different ones.
    relative_to: str | None = None


def compare(
    a: RunRecord, b: RunRecord, between: Usage | None = None, changes: Changes | None = None
) -> RunDiff:
    """The diff of two ``runs`` rows and the document ``changes`` from ``a`` to ``b`` (pure).

    Without ``changes``, two rows that both hold a ``documents`` snapshot (runs from before
    ``run_documents``) are compared by it; otherwise the documents are unknown.
    """
    config = _differing(_config_fields(a), _config_fields(b))
    versions = _differing(
        {k: v for k, v in a.versions.items() if k not in MODEL_FIELDS},
        {k: v for k, v in b.versions.items() if k not in MODEL_FIELDS},
    )
    models = {k: (a.versions.get(k), b.versions.get(k)) for k in MODEL_FIELDS}
    if changes is None and a.documents is not None and b.documents is not None:
        docs_a, docs_b = a.documents, b.documents
        changes = Changes(
            added=sorted(docs_b.keys() - docs_a.keys()),
            changed=sorted(d for d in docs_a.keys() & docs_b.keys() if docs_a[d] != docs_b[d]),
            deleted=sorted(docs_a.keys() - docs_b.keys()),
        )
    return RunDiff(
        a=a,
        b=b,
        config=config,
        versions=versions,
        models=models,
        added=[] if changes is None else changes.added,
        changed=[] if changes is None else changes.changed,
        deleted=[] if changes is None else changes.deleted,
        documents_known=changes is not None,
        documents_a=_document_count(a),
        documents_b=_document_count(b),
        relative_to=None if changes is None else changes.relative_to,
        between=between,
    )


def document_changes(ledger: Ledger, a: RunRecord, b: RunRecord) -> Changes | None:
    """The net document changes from run ``a`` to run ``b`` of one logical namespace, from
    the changes the runs between them recorded (``None``: not known, see :func:`compare`).

    The runs composed are those after the earlier one up to the later one that wrote the later
    one's physical namespace; with ``b`` before ``a`` the result is reversed (added and deleted
    swap). The changes are relative to that namespace (:attr:`Changes.relative_to`) when the
    runs wrote different ones, or it was made again after the earlier run.
    """
    if a.logical_namespace != b.logical_namespace:
        return None
    if a.run_id == b.run_id:
        return Changes([], [], [])
    first, last = (a, b) if a.run_id < b.run_id else (b, a)
    if ledger.runs_without_changes(last.namespace, first.run_id, last.run_id):
        return None  # some run in between is from before run_documents
    net = ledger.net_changes(last.namespace, first.run_id, last.run_id)
    added, deleted = net["added"], net["deleted"]
    if last is a:
        added, deleted = deleted, added
    # Relative, not a diff of the two runs' contents, when the runs wrote different physical
    # namespaces or the later one's was dropped and made again after the earlier run ended
    # (the drop recorded no deletions; the new one's first run added everything).
    registered = ledger.registered_at(last.namespace)
    ended = first.finished_at or first.started_at
    remade = registered is not None and registered > ended
    relative = last.namespace if a.namespace != b.namespace or remade else None
    return Changes(added, net["changed"], deleted, relative)


def diff_runs(ledger: Ledger, run_a: int, run_b: int) -> RunDiff:
    """Read runs ``run_a`` and ``run_b`` and the changes between them from the ledger and
    compare them.

    Raises:
        UnknownRun: either id is not in ``<INDEX_STATE_SCHEMA>.runs``.
    """
    try:
        ledger.setup()  # adds the newer columns and tables to a ledger from before them
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
    return compare(a, b, between, document_changes(ledger, a, b))


def _document_count(run: RunRecord) -> int | None:
    if run.document_count is not None:
        return run.document_count
    return None if run.documents is None else len(run.documents)


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


def _show(value: Any, missing: str = "-") -> str:
    return missing if value is None else str(value)
