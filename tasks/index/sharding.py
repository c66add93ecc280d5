"""Sharded indexing: the writing of one index run split across the workers of a Dask cluster.

How the coordinator and the shards divide the work (``INDEX_SHARDS`` > 1):

- **The coordinator** is the ordinary run (:func:`tasks.index.run.index_documents`, holding the
  namespace's lock for the whole run). It opens the run, plans and checks it (mass-delete guard,
  token budget), records it in the ledger, registers the target namespace and deletes the
  chunks of documents gone from the model, exactly as a single-process run. Then, instead of
  writing the plan's pages itself, :class:`DaskShards` hands their keyset bounds to
  ``INDEX_SHARDS`` Prefect tasks (:func:`index_shard_task`) on prefect-dask's
  ``DaskTaskRunner`` (a local ``distributed.LocalCluster`` of ``DASK_WORKERS`` processes, or
  the scheduler at ``DASK_SCHEDULER_ADDRESS``), waits for every one, adds up what they did,
  and alone validates the namespace and switches it over.
- **A shard** owns the documents whose :func:`shard_of` is its number (a stable hash of the
  document id: every process and every run agree). In a worker process it takes its own
  per-shard lock (:func:`shard_lock_name`), opens a run of the same documents model from the
  worker's settings (it must land on the coordinator's target and fingerprint: a worker with
  another model or chunker is refused, :class:`ShardMismatch`), reads each page again, keeps
  its own documents, and plans and writes them as the single-process path writes a page:
  vectors from the embedding cache, the rest embedded window by window and cached, each batch's
  ledger rows ``pending`` before the store upsert and ``written`` once acknowledged, document
  hashes once all a document's chunks are written. Shards share no document, so no chunk: two
  shards never write the same record.
- **A shard killed** anywhere (its worker process dies) leaves the ledger as a killed
  single-process run would. Dask runs the task again on another worker (or the coordinator
  fails and the next run resumes); either way the shard plans again from the ledger and the
  cache and embeds only what was not acknowledged. The per-shard lock keeps a re-run copy from
  racing one the scheduler merely lost sight of.

Workers need the same code, environment and settings as the coordinator (database, store,
embedder, chunker): they build their own connections from their environment; nothing secret
travels through the Dask scheduler. A run the Batch API takes, or one that adopts records from
a store whose ledger was lost, is written by the coordinator alone (see
:meth:`tasks.index.run.IndexRun.apply`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect_dask.task_runners import DaskTaskRunner

from tasks.embedders import get_embedder
from tasks.embedders.base import Embedder, Usage
from tasks.errors import ConfigError
from tasks.index.documents import EmbeddingSpec, fetch_documents
from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import Ledger
from tasks.index.run import IndexRun, PagePlan, PagesWritten
from tasks.progress import Phase, Progress
from tasks.retry import NETWORK_RETRIES
from tasks.settings import Settings, get_settings
from tasks.stores import get_store
from tasks.stores.base import VectorStore
from tasks.warehouse import Warehouse, get_warehouse

logger = logging.getLogger(__name__)


class ShardMismatch(RuntimeError):
    """A shard's worker would build another index than its coordinator (other settings)."""


def shard_of(document_id: str, shards: int) -> int:
    """The shard (``0 .. shards - 1``) that writes ``document_id``: the first 8 bytes of its
    SHA-256 modulo ``shards``. Stable across processes, machines and Python versions (the
    built-in ``hash`` of a string is salted per process)."""
    digest = hashlib.sha256(document_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lock_name(logical: str, shard: int, shards: int) -> str:
    """The name of the advisory lock shard ``shard`` of ``shards`` holds on ``logical``."""
    return f"{logical}#shard-{shard}-of-{shards}"


@dataclass(frozen=True)
class ShardJob:
    """What one shard task writes: its share of the pages the coordinator planned."""

    spec: EmbeddingSpec
    #: The coordinator's physical namespace, index fingerprint and run id (``index_state.runs``).
    target: str
    fingerprint: str
    run_id: int | None
    shard: int
    shards: int
    #: Keyset bounds ``(after, through)`` of the pages with changed documents, in id order.
    pages: list[tuple[str | None, str]]


@dataclass
class ShardResult:
    """What one shard did: changes to add to the run's result, rejections and usage."""

    shard: int
    rejected_ids: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    #: Chunks written (upserted, updated, deleted or rejected) and texts embedded or reused.
    written: int = 0
    embedded_done: int = 0
    #: Corrections to the coordinator's planned counts (duplicates found in the cache, dead
    #: letters), as :meth:`tasks.index.run.IndexRun._apply_page` makes them.
    embedded: int = 0
    cache_hits: int = 0
    upserted: int = 0


def write_shard(
    job: ShardJob,
    warehouse: Warehouse,
    embedder: Embedder,
    store: VectorStore,
    settings: Settings,
    on_page: Callable[[int, ShardResult], None] | None = None,
) -> ShardResult:
    """Write shard ``job.shard``'s documents of ``job.pages`` (see the module doc);
    ``on_page(pages done, result so far)`` after each page.

    Raises:
        IndexBusy: another copy of this shard kept its lock for ``INDEX_LOCK_WAIT_S``.
        ShardMismatch: this process's settings build another namespace or fingerprint.
    """
    logical = job.spec.namespace
    ledger = Ledger(warehouse, settings.index_state_schema)
    cache = EmbeddingCache(settings.index_state_schema)
    before = embedder.usage.snapshot()
    try:
        # No ledger.setup(): the coordinator created the tables (DDL from many shards at once
        # would only contend).
        with ledger.lock(
            shard_lock_name(logical, job.shard, job.shards), settings.index_lock_wait_s
        ):
            run = IndexRun.open(
                job.spec,
                warehouse,
                embedder,
                store,
                ledger=ledger,
                cache=cache,
                settings=settings,
                # The shard's totals are known only page by page: progress goes to on_page.
                progress=Progress(logical, None),
            )
            if (run.target, run.fingerprint) != (job.target, job.fingerprint):
                raise ShardMismatch(
                    f"Shard {job.shard} of {logical} would write {run.target} (index "
                    f"fingerprint {run.fingerprint}), its coordinator writes {job.target} "
                    f"({job.fingerprint}): this worker's embedder or chunker settings differ. "
                    "Give the Dask workers the same image and environment as the flow run."
                )
            run.result.run_id = job.run_id
            writing = run.progress.phase("writing", 0)
            embedding = run.progress.phase("embedding", 0)
            rejected: list[str] = []

            def so_far() -> ShardResult:
                return ShardResult(
                    shard=job.shard,
                    rejected_ids=rejected,
                    usage=embedder.usage.minus(before),
                    written=writing.done,
                    embedded_done=embedding.done,
                    embedded=run.result.embedded,
                    cache_hits=run.result.cache_hits,
                    upserted=run.result.upserted,
                )

            for done, (after, through) in enumerate(job.pages, start=1):
                docs = [
                    d
                    for d in fetch_documents(warehouse, job.spec, after=after, through=through)
                    if shard_of(d.id, job.shards) == job.shard
                ]
                if docs:
                    rejected += run.apply_documents(docs, after, writing, embedding)
                if on_page is not None:
                    on_page(done, so_far())
            return so_far()
    finally:
        ledger.close()


@task(name="index-shard", timeout_seconds=3600, **NETWORK_RETRIES)
def index_shard_task(job: ShardJob) -> ShardResult:
    """Write one shard of an index run in a Dask worker, from the worker's own settings.

    A retry (or Dask running it again after its worker died) resumes from the ledger:
    acknowledged batches are neither re-embedded nor re-written.
    """
    settings = get_settings()
    run_logger = get_run_logger()

    def log(done: int, so_far: ShardResult) -> None:
        run_logger.info(
            "shard %d/%d of %s: page %d/%d, %d chunks written, %d texts embedded",
            job.shard, job.shards, job.spec.namespace, done, len(job.pages), so_far.written,
            so_far.usage.inputs,
        )  # fmt: skip

    store = get_store(settings)
    try:
        result = write_shard(
            job,
            get_warehouse(settings),
            get_embedder(settings),
            store,
            settings,
            log,
        )
    finally:
        store.close()
    run_logger.info(
        "shard %d/%d of %s: %d chunks written, %d texts embedded (%d requests)",
        job.shard,
        job.shards,
        job.spec.namespace,
        result.written,
        result.usage.inputs,
        result.usage.requests,
    )
    return result


def task_runner(settings: Settings) -> DaskTaskRunner:
    """The Dask task runner the shards run on: the scheduler at ``DASK_SCHEDULER_ADDRESS``, or
    a local cluster of ``DASK_WORKERS`` single-threaded processes (embedding holds the GIL for
    a local model; processes, not threads, use the cores)."""
    if settings.dask_scheduler_address:
        return DaskTaskRunner(address=settings.dask_scheduler_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


@dataclass(frozen=True)
class DaskShards:
    """The :class:`tasks.index.run.PageWriter` of a sharded run: one :func:`index_shard_task`
    per shard on :func:`task_runner`, results added into the coordinator's run."""

    settings: Settings

    def jobs(self, run: IndexRun, pages: Sequence[PagePlan]) -> list[ShardJob]:
        """One job per shard, each with the bounds of every page (a page's documents spread
        over all shards)."""
        bounds = [(p.after, p.through) for p in pages]
        shards = self.settings.index_shards
        return [
            ShardJob(run.spec, run.target, run.fingerprint, run.result.run_id, k, shards, bounds)
            for k in range(shards)
        ]

    def unreachable(self, exc: OSError) -> ConfigError:
        """The error for a Dask cluster the shards cannot reach (retryable: a scheduler may
        be restarting); it names the setting, not just distributed's message."""
        address = self.settings.dask_scheduler_address
        where = (
            f"reach the Dask scheduler at {address}"
            if address
            else f"start a local Dask cluster of {self.settings.dask_workers} workers"
        )
        error = ConfigError(
            f"Sharded indexing (INDEX_SHARDS={self.settings.index_shards}) could not {where}: "
            f"{exc}. Start the scheduler or fix DASK_SCHEDULER_ADDRESS, or set INDEX_SHARDS=1 "
            "to index in this process. Nothing was written by the shards; the next run resumes."
        )
        error.retryable = True
        return error

    def __call__(
        self, run: IndexRun, pages: Sequence[PagePlan], writing: Phase, embedding: Phase
    ) -> PagesWritten:
        """Run the shards of ``pages`` and wait for all of them.

        Raises:
            Exception: the first shard's error, once every shard has ended (the others are not
                cut off mid-batch; what they acknowledged stays acknowledged).
        """
        if not pages:
            return PagesWritten([], Usage())
        jobs = self.jobs(run, pages)
        logger.info(
            "Writing %s in %d shards on Dask (%s)",
            run.logical,
            len(jobs),
            self.settings.dask_scheduler_address or f"local, {self.settings.dask_workers} workers",
        )
        with task_runner(self.settings) as runner:
            try:  # prefect-dask connects to the scheduler (or starts the cluster) at a submit
                futures = [runner.submit(index_shard_task, {"job": job}) for job in jobs]
            except OSError as exc:
                raise self.unreachable(exc) from None
            for future in futures:
                future.wait()
            results: list[ShardResult] = [future.result() for future in futures]
        rejected: list[str] = []
        usage = Usage()
        for shard in results:
            rejected += shard.rejected_ids
            usage = usage.plus(shard.usage)
            run.result.embedded += shard.embedded
            run.result.cache_hits += shard.cache_hits
            run.result.upserted += shard.upserted
            writing.advance(shard.written)
            embedding.advance(shard.embedded_done)
        return PagesWritten(rejected, usage)
