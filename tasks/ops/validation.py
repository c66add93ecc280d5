"""Final checks of a run: dbt tests passed, the store holds every indexed chunk (but the dead
letters), and a probe search answers. Prefect-free; the ``validate-index`` task
(:mod:`tasks.ops.tasks`) runs :func:`validate_run` and fails the run on a failed check."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.errors import PipelineError, ValidationFailed
from tasks.index.run import IndexResult
from tasks.search.searcher import search
from tasks.settings import Settings
from tasks.stores import get_store
from tasks.stores.base import VectorStore
from tasks.transform.dbt import DbtResult

#: How long validation waits for an eventually consistent store (Pinecone) to show all writes.
VALIDATION_SETTLE_S = 120.0


@dataclass
class ValidationReport:
    """Each check with its outcome; ``ok`` when all passed."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append((name, passed, detail))

    @property
    def ok(self) -> bool:
        """All checks passed."""
        return all(passed for _, passed, _ in self.checks)

    def raise_if_failed(self) -> None:
        """Raise :class:`ValidationFailed` listing the failed checks."""
        failed = [f"{name}: {detail}" for name, passed, detail in self.checks if not passed]
        if failed:
            raise ValidationFailed("Validation failed: " + "; ".join(failed))


def validate_run(
    index_results: list[IndexResult],
    dbt_result: DbtResult | None,
    probe_query: str | None,
    settings: Settings,
) -> ValidationReport:
    """Every check of a run, with its outcome (chunks the embedding provider rejected are
    counted and shown, not failed: see :func:`index_checks`)."""
    report = ValidationReport()
    if dbt_result is not None:
        report.add(
            "dbt tests",
            dbt_result.tests_failed == 0,
            f"{dbt_result.tests_passed} passed, {dbt_result.tests_failed} failed",
        )
    store = get_store(settings)
    try:
        for r in index_results:
            if r.dry_run:
                report.add(f"dry run of {r.namespace}", True, "nothing written; counts not checked")
                continue
            physical = r.physical_namespace or r.namespace
            want = r.chunks - r.dead_letters
            for check in index_checks(r, settled_count(store, physical, want)):
                report.add(*check)
            if want:
                hits = search(
                    probe_query or "popular item", top_k=1, namespace=r.namespace, settings=settings
                )
                report.add(
                    f"probe search in {r.namespace}",
                    bool(hits),
                    f"top hit {hits[0].document_id}" if hits else "no results",
                )
    finally:
        store.close()
    return report


def index_checks(r: IndexResult, in_store: int) -> list[tuple[str, bool, str]]:
    """The count checks of one indexed namespace, given the vectors its store holds.

    The store must hold every chunk except the dead letters (chunks the embedding provider
    rejected). Dead letters do not fail validation: they are listed as a passing check so the
    report shows them, and the next run (or ``semantic-index replay``) retries them.
    """
    physical = r.physical_namespace or r.namespace
    want = r.chunks - r.dead_letters
    return [
        (
            f"vectors in {r.namespace}",
            in_store == want,
            f"{r.chunks} chunks from {r.documents} documents, {r.dead_letters} rejected, "
            f"{in_store} in store ({physical})",
        ),
        (
            f"documents in {r.namespace}",
            r.documents > 0,
            f"{r.documents} documents in {r.model}",
        ),
        (
            f"dead letters in {r.namespace}",
            True,
            f"{r.dead_letters} chunks rejected by the embedding provider"
            + (" (not indexed; fix, then `semantic-index replay`)" if r.dead_letters else ""),
        ),
    ]


def settled_count(store: VectorStore, namespace: str, expected: int) -> int:
    """The store's count, after waiting (bounded) for an eventually consistent store to settle."""
    wait = getattr(store, "wait_for_count", None)
    if wait is not None:
        try:
            return int(wait(namespace, expected, timeout=VALIDATION_SETTLE_S))
        except PipelineError:
            pass  # report the count it settled on below
    return store.count(namespace)
