"""Sharded indexing on a real local Dask cluster (2 worker processes) through prefect-dask.

Real PostgreSQL, the real OpenAI SDK against the local OpenAI-compatible server, the Prefect
test harness, and ``distributed.LocalCluster`` started by the run itself (INDEX_SHARDS=2,
DASK_WORKERS=2): the workers are separate OS processes that read the same environment.

- a sharded run (first build, then an update) leaves the store and every ledger table exactly
  as a single-process run over the same documents in another database;
- two shards never write the same chunk: a trigger on the store table logs every write with
  the session that made it; each chunk is written once, and each session wrote one shard's
  documents only;
- a worker SIGKILLed while its shard waits for an embedding response (the server holds it):
  after the run completes (Dask runs the shard again, or a re-run does), no text the ledger
  had acknowledged, nor any text in the embedding cache at the kill, is sent again.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import psutil
import psycopg
import pytest

from tasks.embedders import get_embedder
from tasks.index.chunking import text_hash
from tasks.index.run import IndexResult, index_documents
from tasks.index.sharding import shard_of
from tasks.settings import get_settings
from tasks.stores import get_store
from tasks.warehouse import get_warehouse
from tests.conftest import create_database, reset_caches
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.index.helpers import SPEC, Doc, expected, ledger_rows, store_rows, write_docs

#: The ledger tables a run writes, with the columns that must match between two runs.
LEDGER_TABLES = {
    "chunks": "namespace, chunk_id, logical_namespace, document_id, position, content_hash, "
    "metadata_hash, text, metadata, tokens, fingerprint, state",
    "documents": "namespace, document_id, doc_hash, chunks",
    "run_documents": "run_id, document_id, change",
    "dead_letters": "namespace, chunk_id",
    "namespaces": "physical, logical, fingerprint, state",
}


def corpus(version: int = 0, count: int = 24) -> dict[str, Doc]:
    """``count`` documents of 3 paragraphs: 3 chunks each at 24 tokens per chunk."""
    docs = {}
    for i in range(count):
        body = "\n\n".join(
            f"Paragraph {p} of item {i} (v{version}) about kettles, pans and knives."
            for p in range(3)
        )
        docs[f"doc:{i:03d}"] = Doc(f"Item {i}", body, "kitchen", float(i))
    return docs


def snapshot(url: str) -> dict[str, Any]:
    """The store's records and the ledger's rows of a database, for exact comparison."""
    out: dict[str, Any] = {"store": store_rows(url, "products")}
    with psycopg.connect(url) as conn:
        for table, columns in LEDGER_TABLES.items():
            rows = conn.execute(
                f"select {columns} from index_state.{table} order by {columns}"
            ).fetchall()
            out[table] = rows
    return out


@pytest.fixture
def sharded_env(
    env: pytest.MonkeyPatch, prefect_harness: None, openai_server: FakeOpenAIServer
) -> pytest.MonkeyPatch:
    """Tiny chunks, batches and pages (many of each), the local OpenAI server, 2 shards on a
    local cluster of 2 worker processes."""
    for name, value in {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": openai_server.base_url,
        "EMBEDDING_DIMENSIONS": "8",
        "CHUNK_TOKENS": "24",
        "CHUNK_OVERLAP_TOKENS": "0",
        "INDEX_BATCH_SIZE": "2",
        "INDEX_PAGE_DOCUMENTS": "4",
        "INDEX_LOCK_WAIT_S": "60",
        "INDEX_SHARDS": "2",
        "DASK_WORKERS": "2",
    }.items():
        env.setenv(name, value)
    reset_caches()
    return env


def run_index(env: pytest.MonkeyPatch, shards: int, url: str | None = None) -> IndexResult:
    """One index run of ``SPEC`` from the environment (``url``: another database)."""
    env.setenv("INDEX_SHARDS", str(shards))
    if url is not None:
        env.setenv("DATABASE_URL", url)
    reset_caches()
    settings = get_settings()
    store = get_store(settings)
    try:
        return index_documents(
            SPEC, get_warehouse(settings), get_embedder(settings), store, settings=settings
        )
    finally:
        store.close()


def log_store_writes(url: str) -> None:
    """Create the namespace's table and a trigger logging each write with its session."""
    settings = get_settings()
    store = get_store(settings)
    try:
        store.ensure_namespace("products", 8)
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table public.write_log (chunk_id text, document_id text, backend int)")
        conn.execute(
            "create function public.log_write() returns trigger language plpgsql as $$ begin "
            "insert into public.write_log values (new.id, new.document_id, pg_backend_pid()); "
            "return new; end $$"
        )
        conn.execute(
            "create trigger log_write after insert or update on semantic_index.products "
            "for each row execute function public.log_write()"
        )


def store_writes(url: str) -> list[tuple[str, str, int]]:
    """``(chunk id, document id, backend pid)`` of every store write logged so far."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select chunk_id, document_id, backend from public.write_log")
        return [(r[0], r[1], r[2]) for r in rows.fetchall()]


def test_shard_of_is_a_stable_partition() -> None:
    ids = [f"doc:{i}" for i in range(1000)]
    for shards in (1, 2, 3, 7):
        parts = [{d for d in ids if shard_of(d, shards) == k} for k in range(shards)]
        assert set().union(*parts) == set(ids)
        assert sum(len(p) for p in parts) == len(ids)  # disjoint
        assert all(len(p) > len(ids) / shards / 2 for p in parts)  # none starved
    # A fixed value: every process, machine and Python version agrees (no salted hash()).
    assert [shard_of(f"doc:{i}", 4) for i in range(8)] == [
        shard_of(f"doc:{i}", 4) for i in range(8)
    ]
    assert shard_of("doc:0", 1) == 0


def test_a_worker_with_other_settings_is_refused_before_writing(
    sharded_env: pytest.MonkeyPatch, database_url: str
) -> None:
    """A shard whose worker would build another index (here: another chunk size) than its
    coordinator planned stops with a message naming the fix, and writes nothing."""
    from tasks.index.ledger import Ledger
    from tasks.index.sharding import ShardJob, ShardMismatch, write_shard

    write_docs(database_url, corpus(count=4))
    run_index(sharded_env, 1, database_url)  # the coordinator's index, 24-token chunks
    before = snapshot(database_url)
    sharded_env.setenv("CHUNK_TOKENS", "40")
    reset_caches()
    settings = get_settings()
    warehouse = get_warehouse(settings)
    ledger = Ledger(warehouse, settings.index_state_schema)
    try:
        (entry,) = ledger.namespaces(SPEC.namespace)
    finally:
        ledger.close()
    job = ShardJob(SPEC, entry.physical, entry.fingerprint, None, 0, 2, [(None, "doc:003")])
    store = get_store(settings)
    try:
        with pytest.raises(ShardMismatch, match="same image and environment"):
            write_shard(job, warehouse, get_embedder(settings), store, settings)
    finally:
        store.close()
    assert snapshot(database_url) == before


def test_sharded_run_equals_single_process_and_shards_are_disjoint(
    sharded_env: pytest.MonkeyPatch, database_url: str, pg_server: str
) -> None:
    single_url = create_database(pg_server)
    docs = corpus()
    write_docs(database_url, docs)
    write_docs(single_url, docs)
    log_store_writes(database_url)

    sharded = run_index(sharded_env, 2, database_url)
    single = run_index(sharded_env, 1, single_url)
    want = expected(docs, get_settings(), get_embedder())
    assert {i: r[0] for i, r in store_rows(database_url, "products").items()} == want
    assert snapshot(database_url) == snapshot(single_url)
    assert sharded.embedded == single.embedded == len(want)
    assert sharded.vectors_in_store == single.vectors_in_store == len(want)
    assert sharded.requests >= 2 and sharded.input_tokens == single.input_tokens

    writes = store_writes(database_url)
    assert sorted(w[0] for w in writes) == sorted(want)  # every chunk written exactly once
    by_backend: dict[int, set[int]] = {}
    for _, document_id, backend in writes:
        by_backend.setdefault(backend, set()).add(shard_of(document_id, 2))
    assert all(len(s) == 1 for s in by_backend.values()), by_backend  # one shard per session
    assert {k for s in by_backend.values() for k in s} == {0, 1}  # both shards wrote

    # An update (texts changed, documents gone and added), sharded again: still the same.
    docs = {k: v for k, v in corpus(version=1).items() if k not in {"doc:003", "doc:010"}}
    docs["doc:100"] = Doc("Item 100", "A new item about whisks.", "kitchen", 1.0)
    for i in (0, 5):  # metadata-only changes
        docs[f"doc:{i:03d}"] = Doc(f"Item {i}", corpus()[f"doc:{i:03d}"].body, "garden", 2.0)
    write_docs(database_url, docs)
    write_docs(single_url, docs)
    before = len(writes)
    sharded = run_index(sharded_env, 2, database_url)
    single = run_index(sharded_env, 1, single_url)
    assert snapshot(database_url) == snapshot(single_url)
    assert sharded.embedded == single.embedded and sharded.deleted == single.deleted
    again = [w[0] for w in store_writes(database_url)[before:]]
    assert len(again) == len(set(again))  # no chunk written twice by the update either


class HoldingServer(FakeOpenAIServer):
    """The local OpenAI server, holding every embeddings request from the ``hold_from``-th on
    until ``release`` is set (so a test can kill the process that sent it meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_from: int | None = None
        self.release = threading.Event()
        self.held = threading.Event()
        #: Client ports of the held requests, in arrival order.
        self.held_ports: list[int] = []
        self._count = 0

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        record: Any,
        fault: Fault | None,
        inputs: list[str],
        model: str,
        dimensions: int | None,
    ) -> None:
        with self._lock:
            self._count += 1
            hold = self.hold_from is not None and self._count >= self.hold_from
            if hold and not self.release.is_set():
                self.held_ports.append(handler.client_address[1])
        if hold:
            self.held.set()
            self.release.wait(timeout=120)
        super()._answer(handler, record, fault, inputs, model, dimensions)


@pytest.fixture
def holding_server() -> Iterator[HoldingServer]:
    server = HoldingServer()
    server.start()
    yield server
    server.release.set()
    server.stop()


def process_with_port(port: int) -> psutil.Process | None:
    """The process of this test's tree (a Dask worker) with a TCP connection from ``port``."""
    for child in psutil.Process().children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port == port for c in child.net_connections("tcp")):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def cached_hashes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select content_hash from index_state.embedding_cache").fetchall()
    return {r[0] for r in rows}


def test_worker_killed_mid_shard_then_nothing_acknowledged_is_embedded_again(
    sharded_env: pytest.MonkeyPatch, database_url: str, holding_server: HoldingServer
) -> None:
    server = holding_server
    sharded_env.setenv("OPENAI_BASE_URL", server.base_url)
    docs = corpus()
    write_docs(database_url, docs)
    # Each shard sends one request per page (6 pages of 4 documents): hold from the 5th on,
    # when both shards have pages acknowledged.
    server.hold_from = 5
    seen: dict[str, Any] = {}

    def kill_a_shard() -> None:
        assert server.held.wait(timeout=300), "no request was held"
        port = server.held_ports[0]
        victim = process_with_port(port)
        seen["victim"] = victim
        if victim is not None:
            seen["acknowledged"] = {
                h for h, state in ledger_rows(database_url, "products").values()
                if state == "written"
            }  # fmt: skip
            seen["cached"] = cached_hashes(database_url)
            seen["marker"] = len(server.requests)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
        server.release.set()

    killer = threading.Thread(target=kill_a_shard)
    killer.start()
    try:
        result: IndexResult | None = run_index(sharded_env, 2, database_url)
    except Exception as exc:  # the coordinator may give up on the lost shard: a re-run resumes
        seen["error"] = exc
        result = None
    finally:
        killer.join(timeout=300)
    assert seen.get("victim") is not None, "the held request's worker process was not found"
    if result is None:
        result = run_index(sharded_env, 2, database_url)

    want = expected(docs, get_settings(), get_embedder())
    assert {i: r[0] for i, r in store_rows(database_url, "products").items()} == want
    assert ledger_rows(database_url, "products") == {i: (h, "written") for i, h in want.items()}
    assert result.vectors_in_store == len(want)
    acknowledged, cached = seen["acknowledged"], seen["cached"]
    assert acknowledged, "nothing was acknowledged before the kill: the test proves nothing"
    later = [r for r in server.requests[seen["marker"] :] if r.outcome == "ok"]
    after = [text_hash(t) for r in later for t in r.inputs]
    assert after, "nothing was embedded after the kill"
    assert not set(after) & acknowledged, "acknowledged chunks were embedded again"
    assert not set(after) & cached, "cached texts were embedded again"
    assert len(after) == len(set(after))
    # Informational: whether Dask ran the lost shard again or the coordinator failed.
    how = f"re-run after {type(seen['error']).__name__}" if "error" in seen else "Dask retried"
    print(f"killed worker {seen['victim'].pid}; {how}; {len(after)} texts embedded after")


def test_index_task_in_a_flow_runs_its_shards_on_dask(
    sharded_env: pytest.MonkeyPatch, database_url: str
) -> None:
    """As the index flow runs it: the coordinator is the ``index-namespace`` task of a flow
    run, its shards are task runs of their own."""
    from prefect import flow

    from tasks.index.tasks import index_task

    @flow(name="index-sharded-test")
    def index_one() -> IndexResult:
        return index_task(SPEC)

    docs = corpus(count=8)
    write_docs(database_url, docs)
    result = index_one()
    want = expected(docs, get_settings(), get_embedder())
    assert {i: r[0] for i, r in store_rows(database_url, "products").items()} == want
    assert result.vectors_in_store == len(want) and result.embedded == len(want)


def test_sharded_run_of_a_real_doc_tree_equals_single_process(
    sharded_env: pytest.MonkeyPatch, database_url: str, pg_server: str
) -> None:
    """Pages nobody here wrote: the HTML of Debian's debian-faq package (DocBook output, ids
    that are real file paths, non-ASCII text), read by lxml. A sharded first build equals a
    single-process one exactly, and every chunk is written once, by one shard's session."""
    import lxml.html

    from tests.sources.debian_docs import TREES, fetch_tree, title_of

    try:
        root = fetch_tree(TREES["debian-faq"])
    except RuntimeError as exc:
        pytest.fail(f"Could not get the Debian documentation package: {exc}")
    pages = sorted(root.rglob("*.html"))[:10]
    docs = {
        str(page.relative_to(root)): Doc(
            title_of(page), lxml.html.fromstring(page.read_bytes()).text_content(), "faq"
        )
        for page in pages
    }
    assert len(docs) == 10 and all(d.body.strip() for d in docs.values())
    sharded_env.setenv("CHUNK_TOKENS", "128")
    sharded_env.setenv("INDEX_BATCH_SIZE", "16")
    single_url = create_database(pg_server)
    write_docs(database_url, docs)
    write_docs(single_url, docs)
    log_store_writes(database_url)

    run_index(sharded_env, 2, database_url)
    run_index(sharded_env, 1, single_url)
    assert snapshot(database_url) == snapshot(single_url)
    writes = store_writes(database_url)
    assert (
        len(writes) == len({chunk for chunk, _, _ in writes}) == len(snapshot(single_url)["store"])
    )
    for backend in {b for _, _, b in writes}:
        shards = {shard_of(doc, 2) for _, doc, b in writes if b == backend}
        assert len(shards) == 1, f"session {backend} wrote documents of shards {shards}"


def test_an_unreachable_dask_scheduler_is_a_clear_error_and_the_next_run_completes(
    sharded_env: pytest.MonkeyPatch, database_url: str
) -> None:
    """A wrong DASK_SCHEDULER_ADDRESS: the run stops with a message naming the setting (not
    distributed's bare connection error), writes nothing, and a run without shards then
    completes the index."""
    import dask

    from tasks.errors import ConfigError

    docs = corpus(count=6)
    write_docs(database_url, docs)
    sharded_env.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(ConfigError, match="DASK_SCHEDULER_ADDRESS") as caught,
    ):
        run_index(sharded_env, 2, database_url)
    assert "tcp://127.0.0.1:1" in str(caught.value) and caught.value.retryable
    assert store_rows(database_url, "products") == {}

    run_index(sharded_env, 1, database_url)
    want = expected(docs, get_settings(), get_embedder())
    assert {i: r[0] for i, r in store_rows(database_url, "products").items()} == want
