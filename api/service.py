"""What the service holds for its lifetime: the query embedder (loaded once) and a
``psycopg_pool`` connection pool; each pooled connection carries the :class:`Searcher` that runs
on it (vector store and full-text search share the one connection)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from tasks.embedders import get_embedder
from tasks.embedders.base import Embedder
from tasks.errors import ConfigError, PipelineError
from tasks.index.namespaces import serving_namespace
from tasks.search.fulltext import chunk_text_table
from tasks.search.query_batching import QueryBatcher
from tasks.search.searcher import Searcher, check_query_tokens, namespace_specs
from tasks.settings import Settings
from tasks.stores import get_store
from tasks.stores.base import VectorStore
from tasks.stores.pgvector import PgVectorStore
from tasks.warehouse import Warehouse, get_warehouse

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceBusy(PipelineError):
    """No pooled database connection became free before the deadline."""

    retryable = True


@dataclass(frozen=True)
class BoundWarehouse(Warehouse):
    """A warehouse whose ``connect`` hands out one pooled connection, so the store and the
    full-text search of a pooled :class:`Searcher` run on that connection and never open their
    own. They must not close it: the pool does."""

    bound: psycopg.Connection[Any] | None = None

    def connect(self, **kwargs: object) -> psycopg.Connection[Any]:
        """The bound connection."""
        assert self.bound is not None
        return self.bound


class SearchConnection(psycopg.Connection[tuple[Any, ...]]):
    """A pooled connection with the searcher built on it (in the pool's ``configure``)."""

    searcher: Searcher | None = None
    #: A store the searcher does not get from this connection (Pinecone): closed with it.
    own_store: VectorStore | None = None

    def close(self) -> None:
        """Close the connection and the store that lived with it."""
        store, self.own_store = self.own_store, None
        self.searcher = None
        if store is not None:
            store.close()
        super().close()


def limit_model_threads(threads: int) -> None:
    """Run the local model on ``threads`` CPU threads per call (0: leave torch's default).

    Process-wide, which is what a service process wants: its model only embeds queries. Done
    before the model loads, so an ONNX Runtime session created then follows it too.
    """
    if threads > 0:
        import torch  # the local embedder's own dependency

        torch.set_num_threads(threads)


class SearchService:
    """The query embedder and a pool of ``SEARCH_API_POOL_SIZE`` connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder: Embedder | None = None
        self.batcher: QueryBatcher | None = None
        self._timeout_ms = int(settings.search_timeout_s * 1000)
        self.pool: ConnectionPool[SearchConnection] | None = None

    def start(self) -> None:
        """Load the query embedder now so the first request does not pay for it, start the
        thread that embeds concurrent queries together (:mod:`tasks.search.query_batching`) and
        open the connection pool (connections are made in the background)."""
        embedder = get_embedder(self.settings)
        if embedder.provider == "local":
            limit_model_threads(self.settings.search_embed_threads)
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
        warehouse = get_warehouse(self.settings)
        self.pool = ConnectionPool(
            warehouse.conninfo,
            connection_class=SearchConnection,
            kwargs={"autocommit": True, "connect_timeout": 10},
            min_size=1,
            max_size=self.settings.search_api_pool_size,
            configure=self._configure,
            # One `SELECT 1`-like round trip per checkout: a connection the server dropped while
            # idle (restart, failover, a proxy's idle timeout) is replaced, not handed to a request.
            check=ConnectionPool.check_connection,
            # Half the request's deadline: a request that waited that long for a connection is
            # answered 503 (busy, retry) rather than left to run into its 504.
            timeout=self.settings.search_timeout_s / 2,
            name="search-api",
            open=False,
        )
        self.pool.open(wait=False)

    def _configure(self, conn: SearchConnection) -> None:
        """Build the searcher of a new pooled connection (statement timeout, pgvector types)."""
        bound = BoundWarehouse(conninfo="", embedded=False, bound=conn)
        if self.settings.vector_store == "pgvector":
            store: VectorStore = PgVectorStore(bound, schema=self.settings.vector_schema)
        else:
            store = conn.own_store = get_store(self.settings)
        conn.searcher = Searcher(
            self.settings,
            store=store,
            embedder=self.embedder,
            statement_timeout_ms=self._timeout_ms,
            query_batcher=self.batcher,
            warehouse=bound,
        )
        if self._timeout_ms:
            # Pinecone: the store has no connection, so set the full-text side's timeout here.
            conn.execute(
                "select set_config('statement_timeout', %s, false)", (str(self._timeout_ms),)
            )

    def close(self) -> None:
        """Stop the query batcher and close the pool's connections."""
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def pool_stats(self) -> dict[str, int]:
        """``psycopg_pool``'s counters and gauges (``{}`` before :meth:`start`)."""
        return self.pool.get_stats() if self.pool is not None else {}

    @contextmanager
    def searcher(self) -> Iterator[Searcher]:
        """A searcher for the duration of one request (waits up to the search timeout).

        On an error the pool rolls back or replaces the connection, as its state requires.

        Raises:
            ServiceBusy: no connection became free in time.
        """
        if self.pool is None:
            raise ServiceBusy("The search service is not started; retry shortly.")
        try:
            with self.pool.connection() as conn:
                assert conn.searcher is not None
                yield conn.searcher
        except PoolTimeout:  # only getconn raises it: nothing ran yet
            wait = self.settings.search_timeout_s / 2
            raise ServiceBusy(
                f"No database connection became free within {wait:g} s: "
                "all are busy (raise SEARCH_API_POOL_SIZE) or the database is unreachable; "
                "retry shortly."
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
