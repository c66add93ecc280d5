"""Crash safety with the Pinecone store: SIGKILL the indexing process at random moments, re-run.

The same scenario as ``tests/index/test_crash.py`` (the real indexer, ledger and embedding cache in
the embedded Postgres, the real OpenAI SDK against its local fake), with vectors going through the
official Pinecone SDK to the local Pinecone server. The child process is forked (already
imported) and killed with a real SIGKILL; the Pinecone server lives in this process, so requests
the child had in flight land as they would on the real service. After each re-run Pinecone holds
exactly the desired chunks (no duplicates, no orphans, nothing missing), the ledger agrees, and
nothing the store had acknowledged is embedded again.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import psycopg
import pytest

from tasks.index.chunking import text_hash
from tasks.index.run import index_documents
from tasks.stores.pinecone import PineconeStore, PineconeStoreConfig
from tasks.warehouse import Warehouse
from tests.conftest import create_database
from tests.fakes.openai_fixtures import _server  # noqa: F401
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.pinecone_server import FakePinecone
from tests.index.helpers import (
    SPEC,
    crash_docs,
    crash_expected,
    crash_settings,
    fake_openai,
    ledger_rows,
)
from tests.index.helpers import write_docs as write_documents

pytestmark = pytest.mark.integration

TRIALS = 20


def _index(url: str, base_url: str, store: PineconeStore) -> None:
    settings = crash_settings(url)
    warehouse = Warehouse(conninfo=psycopg.conninfo.make_conninfo(url), embedded=False)
    embedder = fake_openai(base_url, max_request_inputs=4)
    index_documents(SPEC, warehouse, embedder, store, settings=settings)


def _child_main(url: str, base_url: str, config: PineconeStoreConfig, ready: Connection) -> None:
    # Its own SDK client: connections pooled by the parent must not be shared across the fork.
    store = PineconeStore(config)
    ready.send("ready")
    _index(url, base_url, store)


def _start_child(
    url: str, base_url: str, store: PineconeStore
) -> multiprocessing.process.BaseProcess:
    parent, child_end = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_child_main, args=(url, base_url, store.config, child_end), daemon=True
    )
    process.start()
    assert parent.poll(30) and parent.recv() == "ready"
    return process


def _held(server: FakePinecone, store: PineconeStore) -> dict[str, str]:
    vectors = server.vectors(store.config.index_name, "products")
    return {i: str(m["content_hash"]) for i, (_, m) in vectors.items()}


def test_sigkill_at_random_points_then_rerun_with_pinecone(
    pg_server: str,
    openai_server: FakeOpenAIServer,
    fake_pinecone: FakePinecone,
    make_pinecone_store: Callable[..., Any],
) -> None:
    rng = random.Random(1127)
    openai_server.latency = 0.02
    # One undisturbed run sets the window the kills are spread over.
    url = create_database(pg_server)
    write_documents(url, crash_docs())
    store = make_pinecone_store()
    store.ensure_namespace("products", fake_openai(openai_server.base_url).dimension)
    child = _start_child(url, openai_server.base_url, store)
    start = time.monotonic()
    child.join(timeout=120)
    run_seconds = time.monotonic() - start
    assert child.exitcode == 0

    killed_mid_run = 0
    for trial in range(TRIALS):
        url = create_database(pg_server)
        docs = crash_docs()
        write_documents(url, docs)
        store = make_pinecone_store()
        store.ensure_namespace("products", fake_openai(openai_server.base_url).dimension)
        if trial % 2:  # kill an update run rather than the first build
            openai_server.latency = 0.0
            _index(url, openai_server.base_url, store)
            docs = crash_docs(version=1, count=17)  # every text changed, 3 documents gone
            write_documents(url, docs)
        openai_server.reset()  # also clears the latency
        openai_server.latency = 0.02

        child = _start_child(url, openai_server.base_url, store)
        time.sleep(rng.uniform(0.0, run_seconds * 1.1))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        killed_mid_run += child.exitcode == -signal.SIGKILL
        acknowledged = {
            h for h, state in ledger_rows(url, "products").values() if state == "written"
        }

        openai_server.reset()
        _index(url, openai_server.base_url, store)
        me = str(os.getpid())
        resent = {
            text_hash(t)
            for r in openai_server.answered
            if r.headers.get("x-test-pid") == me
            for t in r.inputs
        }

        want = crash_expected(docs, url, openai_server.base_url)
        assert _held(fake_pinecone, store) == want, f"trial {trial}: Pinecone differs"
        assert ledger_rows(url, "products") == {i: (h, "written") for i, h in want.items()}
        assert store.count("products") == len(want)
        assert not resent & acknowledged, f"trial {trial}: re-embedded acknowledged chunks"
    assert killed_mid_run >= TRIALS // 2, f"only {killed_mid_run} kills landed mid-run"


@pytest.fixture
def openai_server(_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:  # noqa: F811
    """The shared fake OpenAI server, reset, with latency switched off again afterwards."""
    _server.reset()
    yield _server
    _server.latency = 0.0
