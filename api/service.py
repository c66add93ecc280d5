"""What the service holds for its lifetime: the query embedder (loaded once) and a pool of
searchers, each with its own database connections."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tasks.embedders import get_embedder
from tasks.embedders.base import Embedder
from tasks.errors import ConfigError, PipelineError
from tasks.index.namespaces import serving_namespace
from tasks.search.fulltext import chunk_text_table
from tasks.search.query_batching import QueryBatcher
from tasks.search.searcher import Searcher, check_query_tokens, namespace_specs
from tasks.settings import Settings
from tasks.warehouse import get_warehouse

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceBusy(PipelineError):
    """Every database connection stayed busy past the deadline."""

    retryable = True


class SearchService:
    """A bounded pool of :class:`Searcher` sharing one embedder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder: Embedder | None = None
        self.batcher: QueryBatcher | None = None
        self._idle: queue.LifoQueue[Searcher] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._timeout_ms = int(settings.search_timeout_s * 1000)

    def start(self) -> None:
        """Load the query embedder now so the first request does not pay for it, and start the
        thread that embeds concurrent queries together (:mod:`tasks.search.query_batching`)."""
        embedder = get_embedder(self.settings)
        _ = embedder.dimension  # loads a local model / probes a remote one once
        self.embedder = embedder
        limit = self.settings.search_max_query_tokens
        self.batcher = QueryBatcher(
            embedder,
            wait_ms=self.settings.search_batch_wait_ms,
            max_batch=self.settings.search_batch_max,
            cache_size=self.settings.search_query_cache_size,
            validate=lambda query: check_query_tokens(embedder, query, limit),
        )
        logger.info("Query embedder ready: %s/%s", embedder.provider, embedder.model)

    def close(self) -> None:
        """Stop the query batcher and close every idle searcher's connections."""
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    @contextmanager
    def searcher(self) -> Iterator[Searcher]:
        """A searcher for the duration of one request (waits up to the search timeout).

        Raises:
            ServiceBusy: none became free in time.
        """
        searcher = self._acquire()
        healthy = False
        try:
            yield searcher
            healthy = True
        finally:
            if healthy:
                self._idle.put(searcher)
            else:
                # Its connection may be mid-transaction or broken: replace it.
                searcher.close()
                with self._lock:
                    self._created -= 1

    def _acquire(self) -> Searcher:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.settings.search_api_pool_size:
                self._created += 1
                create = True
            else:
                create = False
        if create:
            try:
                return Searcher(
                    self.settings,
                    embedder=self.embedder,
                    statement_timeout_ms=self._timeout_ms,
                    query_batcher=self.batcher,
                )
            except BaseException:
                with self._lock:
                    self._created -= 1
                raise
        try:
            return self._idle.get(timeout=self.settings.search_timeout_s)
        except queue.Empty:
            raise ServiceBusy(
                "All database connections are busy; retry shortly or raise SEARCH_API_POOL_SIZE."
            ) from None

    def run(self, fn: Callable[[Searcher], T]) -> T:
        """Call ``fn`` with a pooled searcher."""
        with self.searcher() as s:
            return fn(s)

    def readiness(self) -> dict[str, str]:
        """Each readiness check and its outcome (``ok`` or why not)."""
        checks: dict[str, str] = {}
        try:
            with get_warehouse(self.settings).connect() as conn:
                conn.execute("select 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, not raised
            logger.warning("Readiness: database unreachable: %s", _reason(exc))
            checks["database"] = "unreachable (see the service log)"
        checks["embedder"] = "ok" if self.embedder is not None else "not loaded"
        if checks["database"] != "ok":
            checks["index"] = "unknown (database unreachable)"
            return checks
        try:
            specs = namespace_specs(self.settings)
        except ConfigError as exc:
            # No manifest yet (the pipeline never ran where this service can see its state):
            # every search would fail, so the service is not ready.
            checks["index"] = f"not built: {exc}"
            return checks
        try:
            if not specs:
                checks["index"] = "no namespace declared in the dbt project"
            with self.searcher() as s:
                for spec in specs:
                    physical = serving_namespace(self.settings, spec.namespace)
                    count = s.store.count(physical)
                    checks[f"index:{spec.namespace}"] = (
                        "ok" if count > 0 else "empty: run the pipeline (python flows/main.py)"
                    )
                    table = chunk_text_table(self.settings, physical)
                    if count > 0 and not s.fulltext.ensure_index(table):
                        checks[f"fulltext:{spec.namespace}"] = "chunk text table missing"
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, not raised
            logger.warning("Readiness: store check failed: %s", _reason(exc))
            checks["store"] = "failed (see the service log)"
        return checks


def _reason(exc: BaseException) -> str:
    """A failed check's reason for the log: our own messages carry no credentials; driver
    messages might echo connection details, so only their type is logged."""
    if isinstance(exc, PipelineError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
