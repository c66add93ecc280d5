"""Prometheus metrics of the search service, served at ``GET /metrics`` (docs/search-service.md).

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (the tests) do not collide in the library's global registry. Request metrics are
recorded as requests pass; pool and index freshness are read when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tasks.index.ledger import freshness
from tasks.settings import Settings
from tasks.warehouse import get_warehouse

logger = logging.getLogger(__name__)

#: Seconds; queries embed in ~20 ms on a CPU and retrieve in ~10 ms on HNSW (docs/NOTES).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolCollector(Collector):
    """``psycopg_pool``'s ``get_stats()`` as gauges (current state) and counters (since start)."""

    GAUGES = {
        "pool_max": "Most connections the pool may hold (SEARCH_API_POOL_SIZE).",
        "pool_size": "Connections open now (in use or idle).",
        "pool_available": "Idle connections ready for a request.",
        "requests_waiting": "Requests waiting for a connection now.",
    }
    COUNTERS = {
        "requests_num": "Connections requested from the pool.",
        "requests_queued": "Requests that had to wait for a connection.",
        "requests_errors": "Requests that got no connection in time (answered 503).",
        "requests_wait_ms": "Milliseconds requests spent waiting for a connection.",
        "connections_errors": "Failed attempts to open a database connection.",
        "connections_lost": "Connections found broken and replaced.",
    }

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        """One family per statistic; the pool's in-use count is derived (size - available)."""
        stats = self._stats()
        for key, doc in self.GAUGES.items():
            yield GaugeMetricFamily(f"search_api_db_{key}", doc, value=stats.get(key, 0))
        in_use = stats.get("pool_size", 0) - stats.get("pool_available", 0)
        yield GaugeMetricFamily(
            "search_api_db_pool_in_use", "Connections serving a request now.", value=in_use
        )
        for key, doc in self.COUNTERS.items():
            yield CounterMetricFamily(f"search_api_db_{key}", doc, value=stats.get(key, 0))


class FreshnessCollector(Collector):
    """Per logical namespace, how far the index lags (read from the ledger at scrape time).

    Two aggregate queries on the ledger; a failure is logged and reported as
    ``search_index_freshness_up 0`` rather than failing the scrape.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def collect(self) -> Iterable[Metric]:
        """The freshness families (no sample for a value the ledger does not know)."""
        families = {
            "pending": GaugeMetricFamily(
                "search_index_pending_chunks",
                "Chunks planned but not yet acknowledged by the store.",
                labels=["namespace"],
            ),
            "written": GaugeMetricFamily(
                "search_index_written_chunks",
                "Chunks written to the store.",
                labels=["namespace"],
            ),
            "oldest_pending": GaugeMetricFamily(
                "search_index_oldest_pending_updated_at_seconds",
                "Oldest source updated_at among chunks not yet written (Unix time).",
                labels=["namespace"],
            ),
            "newest_written": GaugeMetricFamily(
                "search_index_newest_written_updated_at_seconds",
                "Newest source updated_at among written chunks (Unix time).",
                labels=["namespace"],
            ),
            "last_success": GaugeMetricFamily(
                "search_index_last_success_timestamp_seconds",
                "When the last completed indexing run finished (Unix time).",
                labels=["namespace"],
            ),
            "last_run": GaugeMetricFamily(
                "search_index_last_run_timestamp_seconds",
                "When the last indexing run started (Unix time).",
                labels=["namespace"],
            ),
            "last_failed": GaugeMetricFamily(
                "search_index_last_run_failed",
                "1 if the last indexing run failed.",
                labels=["namespace"],
            ),
        }
        up = 1
        try:
            with get_warehouse(self._settings).connect(autocommit=True) as conn:
                rows = freshness(conn, self._settings.index_state_schema)
        except Exception as exc:  # noqa: BLE001 - a scrape reports it as a gauge, never a 500
            logger.warning("Metrics: cannot read index freshness: %s", type(exc).__name__)
            rows, up = [], 0
        for r in rows:
            ns = [r.logical]
            families["pending"].add_metric(ns, r.pending_chunks)
            families["written"].add_metric(ns, r.written_chunks)
            families["last_failed"].add_metric(ns, int(r.last_run_failed))
            for key, value in (
                ("oldest_pending", r.oldest_pending_updated_at),
                ("newest_written", r.newest_written_updated_at),
                ("last_success", r.last_success_at),
                ("last_run", r.last_run_at),
            ):
                if value is not None:
                    families[key].add_metric(ns, value)
        yield from families.values()
        yield GaugeMetricFamily(
            "search_index_freshness_up", "1 if the ledger could be read.", value=up
        )


class ServiceMetrics:
    """The metric objects of one app and the registry that serves them."""

    def __init__(self, settings: Settings, pool_stats: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "search_api_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "search_api_request_duration_seconds",
            "Time from request to last response byte, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "search_api_errors",
            "Responses with status >= 400, by status.",
            ["status"],
            registry=self.registry,
        )
        self.embed = Histogram(
            "search_api_embed_duration_seconds",
            "Query embedding time of a search (batched with concurrent queries).",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retrieve = Histogram(
            "search_api_retrieve_duration_seconds",
            "Retrieval time of a search: vector store, full text in hybrid mode, snippets.",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(PoolCollector(pool_stats))
        self.registry.register(FreshnessCollector(settings))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()

    def observe_search(self, mode: str, embed_ms: float, retrieve_ms: float) -> None:
        """Record a search's two phases (from :class:`~tasks.search.searcher.SearchResponse`)."""
        self.embed.labels(mode).observe(embed_ms / 1000)
        self.retrieve.labels(mode).observe(retrieve_ms / 1000)
