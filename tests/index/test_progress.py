"""Progress of an index run: every phase reports from its start, with counts, rate and ETA.

The pure pieces are table-tested with a fake clock; the indexer is run for real (embedded
Postgres, pgvector, the OpenAI SDK against the local server) and its updates are recorded.
"""

from __future__ import annotations

import pytest

from tasks.index.run import index_documents
from tasks.progress import OverallProgress, PhaseUpdate, Progress, format_duration
from tasks.settings import get_settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, Doc, fake_openai, write_docs


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (41.6, "42s"), (59.4, "59s"), (60, "1m00s"), (341, "5m41s"), (7380, "2h03m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "rate", "eta", "shown"),
    [
        (0, 100, 0.0, None, None, "p: embedding 0/100 chunks (0%), rate pending, ETA pending"),
        (25, 100, 5.0, 5.0, 15.0, "p: embedding 25/100 chunks (25%), 5.0 chunks/s, ETA 15s"),
        (100, 100, 20.0, 5.0, 0.0, "p: embedding 100/100 chunks (100%), 5.0 chunks/s, done in 20s"),
        (0, 0, 0.0, None, 0.0, "p: embedding 0/0 chunks (100%), rate pending, done in 0s"),
    ],
)
def test_phase_update_rate_eta_and_text(
    done: int, total: int, elapsed: float, rate: float | None, eta: float | None, shown: str
) -> None:
    update = PhaseUpdate("p", "embedding", done, total, "chunks", elapsed)
    assert update.rate == rate and update.eta_s == eta and update.to_text() == shown


def test_progress_reports_start_and_end_and_throttles_between() -> None:
    now = [0.0]
    seen: list[PhaseUpdate] = []
    progress = Progress("p", seen.append, interval_s=5.0, clock=lambda: now[0])
    phase = progress.phase("chunking", 10, unit="documents")
    assert [(u.done, u.total) for u in seen] == [(0, 10)]  # visible from the first second
    for _ in range(4):
        now[0] += 1.0
        phase.advance()
    assert len(seen) == 1  # within the interval: nothing new
    now[0] += 1.5
    phase.advance()
    assert (seen[-1].done, seen[-1].elapsed_s) == (5, 5.5)
    phase.advance(5)  # the end is always reported
    assert seen[-1].finished and seen[-1].done == 10
    phase.finish()
    assert len(seen) == 3  # finishing a finished phase reports nothing more


def test_overall_progress_only_moves_forward() -> None:
    overall = OverallProgress()
    values = [
        overall.update(PhaseUpdate("p", phase, done, total, "chunks", 1.0))
        for phase, done, total in [
            ("chunking", 0, 10), ("chunking", 10, 10), ("planning", 10, 10),
            ("writing", 0, 8), ("embedding", 0, 8), ("embedding", 8, 8), ("writing", 8, 8),
        ]
    ]  # fmt: skip
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == pytest.approx(100.0)


def test_index_run_reports_every_phase(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    settings = get_settings().model_copy(update={"index_batch_size": 2})
    warehouse = get_warehouse(settings)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    docs = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(7)}
    write_docs(warehouse.conninfo, docs)
    embedder = fake_openai(openai_server.base_url)
    seen: list[PhaseUpdate] = []
    try:
        result = index_documents(SPEC, warehouse, embedder, store, seen.append, settings=settings)
        again: list[PhaseUpdate] = []
        index_documents(SPEC, warehouse, embedder, store, again.append, settings=settings)
    finally:
        store.close()

    phases = [u.phase for u in seen]
    assert set(phases) == {"chunking", "planning", "embedding", "writing"}
    assert phases.index("chunking") < phases.index("planning") < phases.index("writing")
    for name, total in [("chunking", 7), ("planning", 7), ("embedding", 7), ("writing", 7)]:
        updates = [u for u in seen if u.phase == name]
        assert updates[0].done == 0 and updates[0].total == total, name  # from its start
        assert updates[-1].finished and updates[-1].rate is not None, name
        assert "ETA" in updates[0].to_text() and "done in" in updates[-1].to_text()
    assert result.embedded == 7

    # Nothing changed: nothing to embed or write, and the phases say so.
    ends = {u.phase: u for u in again if u.finished}
    assert (ends["embedding"].total, ends["writing"].total) == (0, 0)
    assert ends["chunking"].total == 7 and ends["planning"].total == 7
