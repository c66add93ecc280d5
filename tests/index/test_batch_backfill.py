"""Backfills through the OpenAI Batch API, end to end on real pieces: the documents table in the
embedded Postgres, the ledger and the batch journal, the pgvector store, and the real OpenAI SDK
against the local server speaking the files and batches endpoints."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tasks.index.run import IndexResult, index_documents
from tasks.settings import Settings
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import Warehouse
from tests.conftest import create_database
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import (
    SPEC,
    Doc,
    crash_docs,
    expected,
    fake_openai,
    ledger_rows,
    store_rows,
    write_docs,
)

POISON = "POISON"
PRICE = 0.02  # text-embedding-3-small, USD per 1M tokens (the default EMBEDDING_PRICES)


def batch_settings(url: str, **overrides: Any) -> Settings:
    """Tiny chunks, 4 inputs per request line, 8 inputs per batch, no real waits."""
    values: dict[str, Any] = {
        "database_url": url,
        "chunk_tokens": 24,
        "chunk_overlap_tokens": 0,
        "index_batch_size": 3,
        "openai_batch_min_tokens": 1,
        "openai_batch_poll_interval_s": 0.0,
        "openai_batch_poll_max_interval_s": 0.0,
        "openai_batch_max_inputs": 8,
        **overrides,
    }
    return Settings(**values)


def run(url: str, base_url: str, settings: Settings) -> IndexResult:
    warehouse = Warehouse(conninfo=psycopg.conninfo.make_conninfo(url), embedded=False)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    try:
        return index_documents(
            SPEC, warehouse, fake_openai(base_url, max_request_inputs=4), store, settings=settings
        )
    finally:
        store.close()


def journal(url: str) -> tuple[list[tuple[str, str, int]], int]:
    """``([(batch id, status, inputs)], texts still in flight)`` straight from SQL."""
    with psycopg.connect(url) as conn:
        jobs = conn.execute(
            "select batch_id, status, inputs from index_state.batch_jobs order by submitted_at"
        ).fetchall()
        row = conn.execute("select count(*) from index_state.batch_inputs").fetchone()
    return [(j[0], j[1], j[2]) for j in jobs], int(row[0]) if row else 0


def dead_letters(url: str) -> dict[str, str]:
    """``{chunk id: error class}`` of the dead-letter table."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select chunk_id, error_class from index_state.dead_letters").fetchall()
    return {r[0]: r[1] for r in rows}


def holds_exactly(url: str, want: dict[str, str]) -> None:
    """The store and the ledger hold exactly ``want`` (chunk id -> content hash), all written."""
    assert {i: row[0] for i, row in store_rows(url, "products").items()} == want
    assert ledger_rows(url, "products") == {i: (h, "written") for i, h in want.items()}


@pytest.fixture
def url(pg_server: str) -> Iterator[str]:
    yield create_database(pg_server)


def test_backfill_end_to_end_then_rerun(url: str, openai_server: FakeOpenAIServer) -> None:
    docs = crash_docs(count=6)  # 18 chunks -> 5 request lines of <= 4 -> 3 batches of <= 8
    write_docs(url, docs)
    settings = batch_settings(url)
    result = run(url, openai_server.base_url, settings)

    want = expected(docs, settings, fake_openai(openai_server.base_url))
    holds_exactly(url, want)
    assert result.embedded == len(want) == 18 and result.dead_letters == 0
    assert openai_server.requests == []  # nothing went through POST /v1/embeddings
    assert openai_server.batch_call_count("POST", "/v1/batches") == 3
    assert openai_server.batch_call_count("POST", "/v1/files") == 3
    assert sorted(openai_server.batch_embedded) == sorted(c.text for c in _chunks(docs, settings))
    jobs, in_flight = journal(url)
    assert [(status, n) for _, status, n in jobs] == [
        ("completed", 8),
        ("completed", 8),
        ("completed", 2),
    ]
    assert in_flight == 0

    # Cost: every token went through the batch, at half the synchronous price.
    assert result.input_tokens == sum(c.tokens for c in _chunks(docs, settings))
    assert result.estimated_cost_usd == pytest.approx(result.input_tokens * PRICE / 1e6 * 0.5)

    openai_server.reset()
    again = run(url, openai_server.base_url, settings)
    assert again.embedded == 0 and again.unchanged == 18
    assert openai_server.batch_calls == [] and openai_server.requests == []
    holds_exactly(url, want)


def test_below_the_threshold_the_sync_path_is_used(
    url: str, pg_server: str, openai_server: FakeOpenAIServer
) -> None:
    docs = crash_docs(count=6)
    write_docs(url, docs)
    settings = batch_settings(url, openai_batch_min_tokens=10**9)
    result = run(url, openai_server.base_url, settings)

    holds_exactly(url, expected(docs, settings, fake_openai(openai_server.base_url)))
    assert openai_server.batch_calls == []  # 0 files, 0 batches
    assert len(openai_server.answered) == 5
    # The synchronous price, twice what the same tokens cost through a batch.
    assert result.estimated_cost_usd == pytest.approx(result.input_tokens * PRICE / 1e6)

    url2 = create_database(pg_server)
    write_docs(url2, docs)
    batched = run(url2, openai_server.base_url, batch_settings(url2))
    assert batched.input_tokens == result.input_tokens
    assert batched.estimated_cost_usd == pytest.approx(result.estimated_cost_usd / 2)


def test_unset_threshold_never_uses_batches(url: str, openai_server: FakeOpenAIServer) -> None:
    write_docs(url, crash_docs(count=2))
    run(url, openai_server.base_url, batch_settings(url, openai_batch_min_tokens=None))
    assert openai_server.batch_calls == [] and openai_server.answered


def _poisoned() -> dict[str, Doc]:
    docs = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(10)}
    docs["item:3"] = Doc("Item 3", f"A {POISON} thing the provider refuses.")
    return docs


def test_failed_lines_sync_retry_bisects_to_the_poison(
    url: str, openai_server: FakeOpenAIServer
) -> None:
    docs = _poisoned()
    write_docs(url, docs)
    openai_server.reject_containing = {POISON}
    settings = batch_settings(url)  # OPENAI_BATCH_FAILED_LINES=sync-retry (the default)
    result = run(url, openai_server.base_url, settings)

    want = expected(docs, settings, fake_openai(openai_server.base_url))
    poison = {i for i in want if i.startswith("item:3")}
    assert set(dead_letters(url)) == poison and set(dead_letters(url).values()) == {"http_400"}
    holds_exactly(url, {i: h for i, h in want.items() if i not in poison})
    assert result.dead_letters == len(poison) == 1
    # Only the failed line's inputs went the synchronous way (bisected: 3 good ones answered).
    assert sorted(openai_server.embedded_inputs) == sorted(
        t for t in _line_of_poison(openai_server) if POISON not in t
    )
    assert journal(url)[1] == 0


def test_failed_lines_dead_letter_policy(url: str, openai_server: FakeOpenAIServer) -> None:
    docs = _poisoned()
    write_docs(url, docs)
    openai_server.reject_containing = {POISON}
    settings = batch_settings(url, openai_batch_failed_lines="dead-letter")
    result = run(url, openai_server.base_url, settings)

    want = expected(docs, settings, fake_openai(openai_server.base_url))
    line = _line_of_poison(openai_server)
    dead = dead_letters(url)
    by_text = {c.text: c.id for c in _chunks(docs, settings)}
    assert set(dead) == {by_text[t] for t in line}  # every input of the failed line
    assert set(dead.values()) == {"batch_http_400"}
    assert openai_server.requests == []  # no synchronous request at all
    holds_exactly(url, {i: h for i, h in want.items() if i not in dead})
    assert result.dead_letters == len(line)
    assert journal(url)[1] == 0


def test_expired_batch_lines_are_embedded_synchronously(
    url: str, openai_server: FakeOpenAIServer
) -> None:
    docs = crash_docs(count=6)
    write_docs(url, docs)
    openai_server.batch_script = ["validating", "in_progress", "expired"]
    openai_server.batch_complete_before_end = 1  # one line per batch done before the window
    settings = batch_settings(url)
    result = run(url, openai_server.base_url, settings)

    holds_exactly(url, expected(docs, settings, fake_openai(openai_server.base_url)))
    texts = sorted(c.text for c in _chunks(docs, settings))
    assert len(openai_server.batch_embedded) == 4 + 4 + 2  # the first line of each batch
    # The others were sent once, synchronously, and nothing was sent twice.
    assert sorted(openai_server.batch_embedded + openai_server.embedded_inputs) == texts
    jobs, in_flight = journal(url)
    assert {status for _, status, _ in jobs} == {"expired"} and in_flight == 0
    assert openai_server.batch_call_count("POST", "/v1/batches") == 3  # not resubmitted
    # Cost: the batch part at half price, the rest at the full one.
    batch_tokens = sum(
        c.tokens for c in _chunks(docs, settings) if c.text in set(openai_server.batch_embedded)
    )
    full = result.input_tokens - batch_tokens
    assert result.estimated_cost_usd == pytest.approx((full + batch_tokens * 0.5) * PRICE / 1e6)


# --- a kill while batches are in progress ---------------------------------------------------


def _child(url: str, base_url: str) -> None:
    settings = batch_settings(
        url, openai_batch_poll_interval_s=0.05, openai_batch_poll_max_interval_s=0.05
    )
    run(url, base_url, settings)


def test_kill_while_in_progress_then_resume_submits_nothing_again(
    url: str, openai_server: FakeOpenAIServer
) -> None:
    docs = crash_docs(count=6)
    write_docs(url, docs)
    openai_server.batch_hold = True  # batches stay in_progress until released
    child = multiprocessing.get_context("fork").Process(
        target=_child, args=(url, openai_server.base_url), daemon=True
    )
    child.start()
    deadline = time.monotonic() + 60
    # Polling starts once every batch is submitted and journaled: wait for a few polls.
    while openai_server.batch_call_count("GET", "/v1/batches/{id}") < 6:
        assert time.monotonic() < deadline and child.is_alive()
        time.sleep(0.05)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    statuses = {b.status for b in openai_server.batches.values()}
    assert statuses == {"in_progress"}
    submitted = openai_server.batch_call_count("POST", "/v1/batches")
    uploads = openai_server.batch_call_count("POST", "/v1/files")
    assert submitted == 3 and uploads == 3
    jobs, in_flight = journal(url)
    assert len(jobs) == 3 and in_flight == 18
    assert store_rows(url, "products") == {}

    openai_server.batch_hold = False
    settings = batch_settings(url)
    result = run(url, openai_server.base_url, settings)

    assert openai_server.batch_call_count("POST", "/v1/batches") == submitted  # zero new
    assert openai_server.batch_call_count("POST", "/v1/files") == uploads
    assert openai_server.requests == []  # and nothing synchronous either
    holds_exactly(url, expected(docs, settings, fake_openai(openai_server.base_url)))
    assert result.embedded == 18
    jobs, in_flight = journal(url)
    assert {status for _, status, _ in jobs} == {"completed"} and in_flight == 0


def test_resume_after_an_edit_submits_only_the_new_texts(
    url: str, openai_server: FakeOpenAIServer
) -> None:
    docs = crash_docs(count=6)
    write_docs(url, docs)
    openai_server.batch_hold = True
    child = multiprocessing.get_context("fork").Process(
        target=_child, args=(url, openai_server.base_url), daemon=True
    )
    child.start()
    deadline = time.monotonic() + 60
    while openai_server.batch_call_count("GET", "/v1/batches/{id}") < 3:
        assert time.monotonic() < deadline and child.is_alive()
        time.sleep(0.05)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    assert openai_server.batch_call_count("POST", "/v1/batches") == 3

    # Between the kill and the re-run, one document is edited and one deleted.
    docs["doc:2"] = Doc("Doc 2", "A wholly new text for document two.", "outdoor", 2.0)
    del docs["doc:5"]
    write_docs(url, docs)
    openai_server.batch_hold = False
    settings = batch_settings(url)
    run(url, openai_server.base_url, settings)

    # One new batch, holding only the new text; the three old ones were polled, not resent.
    assert openai_server.batch_call_count("POST", "/v1/batches") == 4
    new_batch = list(openai_server.batches.values())[-1]
    lines = openai_server.files[new_batch.input_file_id].content.splitlines()
    import json

    assert [json.loads(x)["body"]["input"] for x in lines] == [
        ["Doc 2\n\nA wholly new text for document two."]
    ]
    holds_exactly(url, expected(docs, settings, fake_openai(openai_server.base_url)))
    assert journal(url)[1] == 0  # the old texts of doc:2 and doc:5 are cached, not in flight


# --- helpers --------------------------------------------------------------------------------


def _chunks(docs: dict[str, Doc], settings: Settings) -> list[Any]:
    from tasks.index.documents import Document
    from tasks.index.run import chunker_config, document_chunks

    embedder = fake_openai("http://127.0.0.1:9/v1")
    config = chunker_config(settings, embedder)
    out = []
    for doc_id, d in docs.items():
        out += document_chunks(
            Document(doc_id, d.text, d.title, None, None, {}), config, embedder.count_tokens
        )
    return out


def _line_of_poison(server: FakeOpenAIServer) -> list[str]:
    """The inputs of the batch line that carried the poison input (from the uploaded files)."""
    import json

    for f in server.files.values():
        if f.purpose != "batch":
            continue
        for raw in f.content.splitlines():
            inputs = json.loads(raw)["body"]["input"]
            if any(POISON in t for t in inputs):
                return list(inputs)
    raise AssertionError("no line carried the poison input")
