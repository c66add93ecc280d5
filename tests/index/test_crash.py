"""Crash safety: SIGKILL the indexing process at random moments, re-run, check the invariant.

Each trial indexes 20 documents (60 chunks) in a child process (the real OpenAI SDK against the
local fake server, 4 inputs per request, 2 chunks per store batch, a little latency per
request so the run is spread over time), kills it after a random delay, optionally changes the
documents, and re-runs in this process. The child is forked from the test process (it has
everything imported, so a trial costs a run, not an interpreter start); it is a separate OS
process with its own connections, killed with a real SIGKILL. After the re-run:

- the store holds exactly the desired chunks (ids and content hashes): no duplicates, no
  orphans, nothing missing, and the ledger says the same, all ``written``;
- no text whose batch the store had acknowledged before the kill (ledger ``written``), nor any
  text already in the embedding cache, is sent to the embeddings API again.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import random
import signal
import time
from multiprocessing.connection import Connection

import psycopg
import pytest

from tasks.index.chunking import text_hash
from tasks.index.run import index_documents
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import Warehouse
from tests.conftest import create_database
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import (
    SPEC,
    Doc,
    crash_docs,
    crash_expected,
    crash_settings,
    fake_openai,
    ledger_rows,
    store_rows,
    write_docs,
)

TRIALS = 20


def _cached_hashes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute("select content_hash from index_state.embedding_cache").fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
    return {r[0] for r in rows}


def _run_in_process(url: str, base_url: str) -> None:
    settings = crash_settings(url)
    warehouse = Warehouse(conninfo=psycopg.conninfo.make_conninfo(url), embedded=False)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    try:
        index_documents(
            SPEC, warehouse, fake_openai(base_url, max_request_inputs=4), store, settings=settings
        )
    finally:
        store.close()


def _child_main(url: str, base_url: str, ready: Connection) -> None:
    settings = crash_settings(url)
    warehouse = Warehouse(conninfo=psycopg.conninfo.make_conninfo(url), embedded=False)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    embedder = fake_openai(base_url, max_request_inputs=4)
    ready.send("ready")
    index_documents(SPEC, warehouse, embedder, store, settings=settings)


def _start_child(url: str, base_url: str) -> multiprocessing.process.BaseProcess:
    """A separate OS process (forked: already imported, so startup does not dominate) that
    indexes once; returns when it is about to start."""
    parent, child_end = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_child_main, args=(url, base_url, child_end), daemon=True
    )
    process.start()
    assert parent.poll(30) and parent.recv() == "ready"
    return process


def test_sigkill_at_random_points_then_rerun(
    pg_server: str, openai_server: FakeOpenAIServer
) -> None:
    rng = random.Random(20261127)
    killed_mid_run = 0
    resent_unacknowledged = 0
    late_from_killed = 0
    # How long one undisturbed run takes here: kills are spread over that window.
    url = create_database(pg_server)
    write_docs(url, crash_docs())
    openai_server.latency = 0.02
    child = _start_child(url, openai_server.base_url)
    start = time.monotonic()
    child.join(timeout=120)
    run_seconds = time.monotonic() - start
    assert child.exitcode == 0
    for trial in range(TRIALS):
        url = create_database(pg_server)
        docs = crash_docs()
        write_docs(url, docs)
        scenario = trial % 3
        if scenario == 2:  # an update run is killed, not the first build
            openai_server.latency = 0.0
            _run_in_process(url, openai_server.base_url)
            docs = crash_docs(version=1, count=18)  # every text changed, 2 documents gone
            write_docs(url, docs)
        openai_server.reset()
        openai_server.latency = 0.02

        child = _start_child(url, openai_server.base_url)
        time.sleep(rng.uniform(0.0, run_seconds * 1.1))
        assert child.pid is not None  # started by _start_child
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        if child.exitcode == -signal.SIGKILL:
            killed_mid_run += 1
        else:
            assert child.exitcode == 0

        acknowledged = {
            h for h, state in ledger_rows(url, "products").values() if state == "written"
        }
        cached = _cached_hashes(url)
        sent_before = {text_hash(t) for t in openai_server.embedded_inputs}
        if scenario == 1:  # the documents change between the crash and the re-run
            docs = {k: v for k, v in docs.items() if k not in {"doc:0", "doc:7", "doc:13"}}
            docs["doc:4"] = Doc("Doc 4", "A wholly new text for document four.", "outdoor", 4.0)
            write_docs(url, docs)

        openai_server.reset()
        _run_in_process(url, openai_server.base_url)
        me = str(os.getpid())
        resent = [
            text_hash(t)
            for r in openai_server.answered
            if r.headers.get("x-test-pid") == me
            for t in r.inputs
        ]
        late = [r for r in openai_server.requests if r.headers.get("x-test-pid") != me]
        late_from_killed += len(late)

        want = crash_expected(docs, url, openai_server.base_url)
        rows = store_rows(url, "products")
        assert {i: r[0] for i, r in rows.items()} == want, f"trial {trial}"
        assert ledger_rows(url, "products") == {i: (h, "written") for i, h in want.items()}
        with psycopg.connect(url) as conn:
            total, distinct = conn.execute(
                "select count(*), count(distinct id) from semantic_index.products"
            ).fetchone()  # type: ignore[misc]
        assert total == distinct == len(want)
        assert not set(resent) & acknowledged, f"trial {trial}: re-embedded acknowledged chunks"
        assert not set(resent) & cached, f"trial {trial}: re-embedded cached chunks"
        assert len(resent) == len(set(resent))  # each text at most once per run
        resent_unacknowledged += len(set(resent) & sent_before)
    assert killed_mid_run >= TRIALS // 2, f"only {killed_mid_run} kills landed mid-run"
    # Informational: texts embedded by the killed run whose response never reached the cache.
    print(
        f"{killed_mid_run}/{TRIALS} killed mid-run; {resent_unacknowledged} unacknowledged texts "
        f"re-sent; {late_from_killed} requests of killed processes arrived late"
    )


@pytest.fixture(autouse=True)
def _no_latency(openai_server: FakeOpenAIServer) -> None:
    openai_server.latency = 0.0
