"""Query embedding for a service: concurrent queries embedded together, repeated ones cached.

A local model embeds one short query in about 20 ms on these 2 cores, 8 queries in one call in
about 37 ms and 32 in about 94 ms (BENCHMARKS.md): one call per request caps a search service
at about 50 queries a second, however many clients wait. :class:`QueryBatcher` gives the
model to one thread that takes every query waiting (collecting for at most ``wait_ms`` more,
at most ``max_batch`` at once), embeds them in one call and hands each caller its vector. While
the model works, new queries queue up and form the next batch, so a busy service batches by
itself and a quiet one adds at most ``wait_ms`` to a query.

Vectors of recent queries are kept in an LRU cache keyed by the embedder's fingerprint and the
query with its whitespace normalised (what is embedded is that normalised text, so a cached and
a fresh vector never differ).

No library does this for sentence-transformers in-process (batching servers such as Triton or
TEI are separate services); the queue and the futures are the standard library's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from cachetools import LRUCache

from tasks.embedders.base import Embedder
from tasks.errors import EmbeddingError

logger = logging.getLogger(__name__)


def normalize_query(query: str) -> str:
    """The query as embedded and cached: whitespace runs collapsed, ends stripped."""
    return " ".join(query.split())


class QueryTimeout(EmbeddingError):
    """A query waited longer than its deadline for its vector."""


class QueryBatcher:
    """Embeds queries from many threads in shared model calls (see the module docstring)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        wait_ms: float = 2.0,
        max_batch: int = 32,
        cache_size: int = 1024,
        validate: Callable[[str], int | None] | None = None,
    ) -> None:
        """``validate(text)`` runs in the batching thread before a query is embedded (e.g. a
        length check with the model's tokenizer, which must not be used from two threads at
        once); what it raises is raised to that query's caller alone. When it returns the
        query's token count (as :func:`~tasks.search.searcher.check_query_tokens` does), the
        count is passed on to ``embed``, so the query is tokenized once."""
        self.embedder = embedder
        self.validate = validate
        self.wait_s = wait_ms / 1000.0
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[str, Future[list[float]]] | None] = queue.SimpleQueue()
        self._cache: LRUCache[tuple[str, str], list[float]] | None = (
            LRUCache(maxsize=cache_size) if cache_size else None
        )
        self._cache_lock = threading.Lock()
        #: Model calls made and queries they embedded (for tests, logs and benchmarks).
        self.calls = 0
        self.embedded = 0
        self.cache_hits = 0
        self._thread = threading.Thread(target=self._run, name="query-embedder", daemon=True)
        self._thread.start()

    def embed(self, query: str, timeout_s: float) -> list[float]:
        """The vector of ``query``, waiting at most ``timeout_s`` seconds for it.

        Raises:
            QueryTimeout: no vector within ``timeout_s``.
            EmbeddingError: the model call failed (every query of that batch gets the error).
        """
        text = normalize_query(query)
        key = (self.embedder.fingerprint, text)
        if self._cache is not None:
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self.cache_hits += 1
                    return hit
        future: Future[list[float]] = Future()
        self._queue.put((text, future))
        try:
            vector = future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: the batcher skips it
            raise QueryTimeout(
                f"The query waited more than {timeout_s:g} s for the embedding model."
            ) from None
        if self._cache is not None:
            with self._cache_lock:
                self._cache[key] = vector
        return vector

    def close(self) -> None:
        """Stop the batching thread (queries still queued get an error)."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take_batch(self) -> list[tuple[str, Future[list[float]]]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            live = []
            counts: dict[str, int | None] = {}
            for text, future in batch:
                if not future.set_running_or_notify_cancel():
                    continue  # its caller gave up
                try:
                    if text not in counts:
                        counts[text] = self.validate(text) if self.validate is not None else None
                except Exception as exc:  # this query's own problem (too long, ...)
                    future.set_exception(exc)
                    continue
                live.append((text, future))
            texts = list(dict.fromkeys(t for t, _ in live))
            if not texts:
                continue
            known = [n for n in (counts[t] for t in texts) if n is not None]
            try:
                embedded = self.embedder.embed(
                    texts, token_counts=known if len(known) == len(texts) else None
                )
                vectors = dict(zip(texts, embedded, strict=True))
            except Exception as exc:  # handed to every waiting caller, who raises it
                logger.warning("Query embedding failed for %d queries: %s", len(texts), exc)
                for _, future in live:
                    future.set_exception(exc)
                continue
            self.calls += 1
            self.embedded += len(texts)
            for text, future in live:
                future.set_result(vectors[text])
