"""Pinecone store: one serverless index, one Pinecone namespace per store namespace.

Talks to Pinecone through the official SDK (``pinecone>=10.2``, REST). What this module adds on
top of the SDK:

* **Requests that are never rejected.** Upserts are packed greedily by their *measured* JSON size
  (the same ``orjson`` encoding the SDK sends) under 2 MB and 1000 vectors per request; metadata
  over 40 KB first loses the chunk ``text`` (it is kept in Postgres), else the record is refused
  with a clear error before anything is sent; ids must be 1-512 ASCII characters; dimensions are
  checked locally. Vectors are sent as float32 (Pinecone stores float32) so each float costs
  ~10 bytes of JSON instead of ~20.
* **One retry layer, targeted.** This store is the only layer that retries Pinecone requests,
  on the project's policy (:mod:`tasks.retry`: what is transient, full-jitter backoff from
  ``retry_backoff_s`` never shorter than the server's ``Retry-After``, capped at
  ``max_backoff_s``). The SDK's own retries (3 per request, under a process-wide retry budget)
  are switched off, on the control plane through ``RetryConfig(max_retries=0)`` and on the data
  plane by :func:`without_sdk_retries`: layered, they multiplied (4 SDK tries x 5 rounds x 4
  Prefect task runs = 80 sends of one batch). Batches run in a bounded thread pool; every
  batch's result is checked and only the batches that failed are resent, for at most
  ``max_rounds`` rounds in all (a per-call retry cannot do that: it would resend a whole
  operation, or hold a pool thread per sleeping batch); single requests get ``max_rounds``
  tries through tenacity. Then :class:`PineconeUnavailable` is raised marked final
  (:func:`~tasks.retry.give_up`), so the Prefect task does not retry the step again. Other 4xx
  answers fail at once.
* **The project's filter syntax** (``tasks/stores/filters.py``) translated to Pinecone's. Pinecone
  compares ranges on numbers only, so every ISO-8601 date string in metadata is also written as a
  numeric shadow field ``<key>__ts`` (epoch seconds) and date ranges are translated onto it.
* **Freshness.** Pinecone is eventually consistent. Writes return an LSN; :meth:`count` waits
  (bounded) until ``describe_index_stats`` reports an LSN at least as new as this store's last
  write, and :meth:`wait_for_count` polls (bounded) until a namespace holds an expected count.

Metadata written per vector: the record's metadata (document id, chunk position, title, url,
updated_at, declared columns ... as ``tasks/index/run.py`` builds it) plus ``document_id``,
``content_hash`` and ``text`` (when it fits). Search hits return the record's metadata without
the internal keys. ``delete`` never deletes everything; only :meth:`drop_namespace` does.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, Field, SecretStr

from tasks.errors import VectorStoreError
from tasks.retry import (
    give_up,
    is_transient,
    retry_after_of,
    retrying,
    status_of,
    wait_backoff_or_retry_after,
)
from tasks.stores.base import (
    MetadataValue,
    SearchHit,
    StoredRecord,
    VectorRecord,
    VectorStore,
    check_namespace,
)
from tasks.stores.filters import parse_filter

if TYPE_CHECKING:
    from pinecone import Index, Pinecone

    from tasks.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Pinecone's documented limits (docs.pinecone.io/reference/api/database-limits).
MAX_REQUEST_BYTES = 2_000_000  # "2 MB": read as 10^6 bytes, the stricter reading
MAX_VECTORS_PER_UPSERT = 1000
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_IDS_PER_REQUEST = 1000  # fetch and delete
MAX_TOP_K = 10_000
LIST_PAGE = 100  # the most ids /vectors/list returns per page
FETCH_CHUNK = 100  # ids go in the query string: keep URLs short

#: Keys the store adds to each vector's metadata (and strips from search hits).
TEXT_KEY = "text"
HASH_KEY = "content_hash"
DOC_KEY = "document_id"
TS_SUFFIX = "__ts"
_RESERVED = {TEXT_KEY, HASH_KEY}

_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


class PineconeUnavailable(VectorStoreError):
    """Pinecone kept failing (rate limits, 5xx, connections) after bounded retries, or a count
    did not converge in time. Transient by nature; the store marks the first kind final
    (:func:`~tasks.retry.give_up`) since it already retried."""

    retryable = True


class PineconeStoreConfig(BaseModel):
    """Settings of the Pinecone store (built from :class:`~tasks.settings.Settings`)."""

    provider: str = "pinecone"
    api_key: SecretStr
    index_name: str = "semantic-index"
    cloud: str = "aws"
    region: str = "us-east-1"
    metric: str = "cosine"
    index_host: str | None = None
    controller_host: str | None = None
    create_index: bool = False
    parallelism: int = Field(default=4, ge=1, le=32)
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_batch_vectors: int = Field(default=MAX_VECTORS_PER_UPSERT, ge=1, le=1000)
    max_metadata_bytes: int = MAX_METADATA_BYTES
    max_rounds: int = Field(
        default=5, ge=1, description="Attempts per batch or request, in all (the only layer)."
    )
    retry_backoff_s: float = Field(default=1.0, ge=0, description="First wait between rounds.")
    max_backoff_s: float = 30.0
    freshness_timeout_s: float = Field(default=60.0, ge=0)
    request_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PineconeStoreConfig:
        """The store config from ``PINECONE_*`` settings."""
        if settings.pinecone_api_key is None:
            raise VectorStoreError("VECTOR_STORE=pinecone needs PINECONE_API_KEY.")
        return cls(
            api_key=settings.pinecone_api_key,
            index_name=settings.pinecone_index_name,
            cloud=settings.pinecone_cloud,
            region=settings.pinecone_region,
            metric=settings.pinecone_metric,
            index_host=settings.pinecone_index_host,
            controller_host=settings.pinecone_controller_host,
            create_index=settings.pinecone_create_index,
            parallelism=settings.pinecone_upsert_parallelism,
        )


class PineconeStore(VectorStore):
    """Vectors in a Pinecone serverless index."""

    name = "pinecone"

    def __init__(
        self,
        config: PineconeStoreConfig,
        text_lookup: Callable[[str, Sequence[str]], dict[str, str]] | None = None,
    ) -> None:
        """``text_lookup(namespace, ids)`` supplies chunk texts that did not fit in metadata."""
        self.config = config
        self._text_lookup = text_lookup
        self._pc: Pinecone | None = None
        self._index: Index | None = None
        self._dimension: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # stats and the LSN
        # Its own lock: the describe call made under it counts itself under ``_lock``.
        self._index_lock = threading.Lock()
        self._written_lsn: int | None = None
        self._wait = wait_backoff_or_retry_after(config.retry_backoff_s, config.max_backoff_s)
        #: What this store sent: requests per operation, retried batches, dropped texts.
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"PineconeStore(index={self.config.index_name!r})"  # never the key

    # ------------------------------------------------------------------ clients
    @property
    def pc(self) -> Pinecone:
        """Control-plane client (created on first use)."""
        if self._pc is None:
            from pinecone import Pinecone, RetryConfig

            self._pc = Pinecone(
                api_key=self.config.api_key.get_secret_value(),
                host=self.config.controller_host or None,
                timeout=self.config.request_timeout_s,
                retry_config=RetryConfig(max_retries=0),  # this store retries (module doc)
            )
        return self._pc

    @property
    def index(self) -> Index:
        """Data-plane client for the index (its host from settings or one describe call)."""
        with self._index_lock:  # pool threads may ask first
            if self._index is None:
                host = self.config.index_host or self._describe_host()
                self._index = without_sdk_retries(self.pc.index(host=host))
            return self._index

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The bounded pool that runs batches in parallel."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.config.parallelism, thread_name_prefix="pinecone"
            )
        return self._pool

    def close(self) -> None:
        """Stop the pool and close HTTP connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._pc is not None:
            self._pc.close()
            self._pc = None

    def _describe_host(self) -> str:
        from pinecone.errors import NotFoundError

        try:
            description = self._call(
                "describe_index", partial(self.pc.indexes.describe, self.config.index_name)
            )
        except NotFoundError:
            raise VectorStoreError(
                f"Pinecone index {self.config.index_name!r} does not exist: call "
                "ensure_namespace (with PINECONE_CREATE_INDEX=true) or create it."
            ) from None
        if not description.host:
            raise VectorStoreError(f"Pinecone index {self.config.index_name!r} has no host yet.")
        return str(description.host)

    # ------------------------------------------------------------------ index
    def ensure_namespace(self, namespace: str, dimension: int) -> None:
        """Make sure the index exists with ``dimension`` and the configured metric.

        Pinecone namespaces need no creation: the first upsert creates one.

        Raises:
            VectorStoreError: the index is missing (and may not be created) or has another
                dimension or metric.
        """
        check_namespace(namespace)
        if self._dimension == dimension:
            return
        found = self._index_shape()
        if found is None and self._create_index(dimension):
            found = (dimension, self.config.metric)
        elif found is None:
            found = self._index_shape()  # created meanwhile, by a retried request or another run
            if found is None:
                raise VectorStoreError(
                    f"Pinecone answered that index {self.config.index_name!r} exists but does "
                    "not describe it: retry in a minute."
                )
        existing_dimension, metric = found
        if existing_dimension != dimension:
            raise VectorStoreError(
                f"Pinecone index {self.config.index_name!r} holds {existing_dimension}-"
                f"dimensional vectors but the embedder produces {dimension}. Use another index "
                "(PINECONE_INDEX_NAME) or rebuild it: the embedding model or its dimensions "
                "changed."
            )
        if metric is not None and metric != self.config.metric:
            raise VectorStoreError(
                f"Pinecone index {self.config.index_name!r} uses the {metric!r} metric, not "
                f"{self.config.metric!r} (PINECONE_METRIC). Use an index with the right metric."
            )
        self._dimension = dimension

    def _index_shape(self) -> tuple[int, str | None] | None:
        """``(dimension, metric)`` of the index, or None when it does not exist."""
        from pinecone.errors import NotFoundError

        if self.config.index_host:
            stats = self._call("describe_index_stats", self.index.describe_index_stats)
            if stats.dimension is None:
                raise VectorStoreError("Pinecone did not report the index dimension.")
            return int(stats.dimension), stats.metric
        try:
            description = self._call(
                "describe_index", partial(self.pc.indexes.describe, self.config.index_name)
            )
        except NotFoundError:
            return None
        field = _dense_field(description.schema.fields)
        if field is None:
            raise VectorStoreError(
                f"Pinecone index {self.config.index_name!r} has no dense vector field."
            )
        return int(field.dimension), str(field.metric).lower()

    def _create_index(self, dimension: int) -> bool:
        """Create the index; False when Pinecone answers that it exists already (a retried
        create whose first try went through, or another run)."""
        from pinecone.errors import ConflictError

        if not self.config.create_index:
            raise VectorStoreError(
                f"Pinecone index {self.config.index_name!r} does not exist. Create it "
                f"({dimension} dimensions, {self.config.metric}) or set "
                "PINECONE_CREATE_INDEX=true to let the pipeline create a serverless index."
            )
        logger.info(
            "Creating Pinecone serverless index %s (%d dims, %s, %s/%s)",
            self.config.index_name,
            dimension,
            self.config.metric,
            self.config.cloud,
            self.config.region,
        )
        create = partial(
            self.pc.indexes.create,
            name=self.config.index_name,
            schema={
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": dimension,
                        "metric": self.config.metric,
                    }
                }
            },
            deployment={
                "deployment_type": "managed",
                "cloud": self.config.cloud,
                "region": self.config.region,
            },
            timeout=300,
        )
        try:
            self._call(
                "create_index", create, retry_on=lambda e: is_transient(e) and status_of(e) != 409
            )
        except ConflictError:
            logger.info("Pinecone index %s exists already", self.config.index_name)
            return False
        return True

    def _known_dimension(self) -> int:
        if self._dimension is None:
            shape = self._index_shape()
            if shape is None:
                raise VectorStoreError(
                    f"Pinecone index {self.config.index_name!r} does not exist: call "
                    "ensure_namespace first."
                )
            self._dimension = shape[0]
        return self._dimension

    # ------------------------------------------------------------------ writes
    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace ``records`` in size-bounded batches sent in parallel."""
        check_namespace(namespace)
        if not records:
            return 0
        dimension = self._known_dimension()
        bad = [r.id for r in records if len(r.values) != dimension]
        if bad:
            raise VectorStoreError(
                f"{len(bad)} record(s) (e.g. {bad[0]!r}) do not have {dimension} dimensions."
            )
        items = [self._item(r) for r in records]
        batches = pack_batches(
            items, namespace, self.config.max_request_bytes, self.config.max_batch_vectors
        )
        self._run_batches("upsert", batches, lambda b: self._send_upsert(namespace, b))
        return len(items)

    def _item(self, record: VectorRecord) -> dict[str, Any]:
        check_vector_id(record.id)
        metadata, with_text = stored_metadata(
            record.metadata,
            record.document_id,
            record.content_hash,
            record.text,
            self.config.max_metadata_bytes,
            record_id=record.id,
        )
        if not with_text:
            self.stats["texts_dropped"] += 1
        return {"id": record.id, "values": float32_list(record.values), "metadata": metadata}

    def _send_upsert(self, namespace: str, batch: list[dict[str, Any]]) -> None:
        response = self.index.upsert(vectors=batch, namespace=namespace)
        if response.upserted_count != len(batch):
            # Counted as a failed batch: _run_batches sends it again.
            raise _PartialWrite(f"upserted {response.upserted_count} of {len(batch)} vectors")
        self._note_lsn(response.response_info)

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        """Delete ``ids`` (missing ones are ignored) in requests of at most 1000 ids."""
        from pinecone.errors import NotFoundError

        check_namespace(namespace)
        # Ids Pinecone cannot hold cannot be present: nothing to delete for them.
        valid = [i for i in dict.fromkeys(ids) if _valid_id(i)]

        def send(chunk: list[str]) -> None:
            try:
                self.index.delete(ids=chunk, namespace=namespace)
            except NotFoundError:
                return  # the namespace does not exist (yet): nothing to delete

        step = MAX_IDS_PER_REQUEST
        chunks = [valid[i : i + step] for i in range(0, len(valid), step)]
        self._run_batches("delete", chunks, send)
        return len(ids)

    def update_metadata(
        self, namespace: str, updates: Sequence[tuple[str, dict[str, MetadataValue]]]
    ) -> int:
        """Replace the metadata of existing records; vectors stay as they are.

        Pinecone's update endpoint merges keys and cannot remove one, so records that lose a
        key are re-upserted with their stored values instead; missing ids are ignored.
        """
        check_namespace(namespace)
        if not updates:
            return 0
        wanted = dict(updates)
        current = self._fetch(namespace, list(wanted))
        patches: list[tuple[str, dict[str, Any]]] = []
        rewrites: list[dict[str, Any]] = []
        for vid, new_user in wanted.items():
            if vid not in current:
                continue
            values, old = current[vid]
            text = old.get(TEXT_KEY)
            metadata, _ = stored_metadata(
                new_user,
                str(old.get(DOC_KEY, "")),
                str(old.get(HASH_KEY, "")),
                text if isinstance(text, str) else None,
                self.config.max_metadata_bytes,
                record_id=vid,
            )
            if set(old) - set(metadata):
                rewrites.append({"id": vid, "values": float32_list(values), "metadata": metadata})
            else:
                patches.append((vid, metadata))
        if patches:
            self._run_batches(
                "update", [[p] for p in patches], lambda b: self._send_update(namespace, b[0])
            )
        if rewrites:
            batches = pack_batches(
                rewrites, namespace, self.config.max_request_bytes, self.config.max_batch_vectors
            )
            self._run_batches("upsert", batches, lambda b: self._send_upsert(namespace, b))
        return len(updates)

    def _send_update(self, namespace: str, patch: tuple[str, dict[str, Any]]) -> None:
        from pinecone.errors import NotFoundError

        try:
            response = self.index.update(id=patch[0], set_metadata=patch[1], namespace=namespace)
        except NotFoundError:
            return  # deleted since the fetch
        self._note_lsn(response.response_info)

    def drop_namespace(self, namespace: str) -> None:
        """Delete every vector of the namespace (blue/green clean-up only)."""
        from pinecone.errors import NotFoundError

        check_namespace(namespace)
        logger.warning("Deleting every vector of Pinecone namespace %s", namespace)
        try:
            self._call("delete", lambda: self.index.delete(delete_all=True, namespace=namespace))
        except NotFoundError:
            return

    # ------------------------------------------------------------------ reads
    def query(
        self,
        namespace: str,
        vector: Sequence[float],
        top_k: int,
        filter: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``top_k`` nearest records (Pinecone's score; cosine by default), best first."""
        check_namespace(namespace)
        pinecone_filter = translate_filter(filter)
        if not 1 <= top_k <= MAX_TOP_K:
            raise VectorStoreError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
        dimension = self._known_dimension()
        if len(vector) != dimension:
            raise VectorStoreError(
                f"Query vector has {len(vector)} dimensions; index "
                f"{self.config.index_name!r} has {dimension}."
            )
        response = self._call(
            "query",
            lambda: self.index.query(
                vector=float32_list(vector),
                top_k=top_k,
                namespace=namespace,
                filter=pinecone_filter,
                include_metadata=True,
            ),
        )
        hits = []
        missing_text = []
        for match in response.matches:
            metadata = dict(match.metadata or {})
            text = metadata.get(TEXT_KEY)
            if not isinstance(text, str):
                missing_text.append(match.id)
            hits.append(
                SearchHit(
                    id=match.id,
                    document_id=str(metadata.get(DOC_KEY, "")),
                    score=float(match.score),
                    text=text if isinstance(text, str) else "",
                    metadata=user_metadata(metadata),
                )
            )
        if missing_text and self._text_lookup is not None:
            texts = self._text_lookup(namespace, missing_text)
            hits = [
                SearchHit(h.id, h.document_id, h.score, texts.get(h.id, h.text), h.metadata)
                if h.id in texts
                else h
                for h in hits
            ]
        return hits

    def count(self, namespace: str) -> int:
        """Vectors in the namespace per ``describe_index_stats``, after this store's writes.

        Waits (at most ``freshness_timeout_s``) until the stats include this store's last write,
        when Pinecone reports LSNs; otherwise the count may lag (see :meth:`wait_for_count`).
        """
        check_namespace(namespace)
        if self._dimension is None and self._index_shape() is None:
            return 0
        deadline = time.monotonic() + self.config.freshness_timeout_s
        delay = 0.05
        while True:
            stats = self._call("describe_index_stats", self.index.describe_index_stats)
            reconciled = stats.response_info.lsn_reconciled if stats.response_info else None
            target = self._written_lsn
            if target is None or reconciled is None or reconciled >= target:
                break
            if time.monotonic() >= deadline:
                logger.warning(
                    "Pinecone stats still behind this store's writes after %.0fs (LSN %s < %s)",
                    self.config.freshness_timeout_s,
                    reconciled,
                    target,
                )
                break
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        summary = stats.namespaces.get(namespace)
        return int(summary.vector_count) if summary is not None else 0

    def wait_for_count(self, namespace: str, expected: int, timeout: float = 60.0) -> int:
        """Poll ``describe_index_stats`` until ``namespace`` holds ``expected`` vectors.

        Raises:
            PineconeUnavailable: the count did not reach ``expected`` within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            stats = self._call("describe_index_stats", self.index.describe_index_stats)
            summary = stats.namespaces.get(namespace)
            found = int(summary.vector_count) if summary is not None else 0
            if found == expected:
                return found
            if time.monotonic() >= deadline:
                raise PineconeUnavailable(
                    f"Pinecone namespace {namespace!r} shows {found} vectors, expected "
                    f"{expected}, after waiting {timeout:.0f}s. Writes are eventually "
                    "consistent: retry validation later, or re-run indexing if it persists."
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def content_hashes(self, namespace: str) -> dict[str, str]:
        """``{id: content_hash}`` of the whole namespace: list ids page by page, then fetch."""
        check_namespace(namespace)
        if self._dimension is None and self._index_shape() is None:
            return {}
        futures: list[Future[dict[str, tuple[list[float], dict[str, Any]]]]] = []
        for page in self._list_pages(namespace):
            futures.append(self.pool.submit(self._fetch, namespace, page))
        hashes: dict[str, str] = {}
        for future in futures:
            for vid, (_, metadata) in future.result().items():
                hashes[vid] = str(metadata.get(HASH_KEY, ""))
        return hashes

    def scan(self, namespace: str, page_size: int = LIST_PAGE) -> Iterator[list[StoredRecord]]:
        """Every record: ids listed page by page (``/vectors/list``, at most ``LIST_PAGE`` per
        page whatever ``page_size`` says), each page fetched (``/vectors/fetch``, ``FETCH_CHUNK``
        ids per request); the dimension is the length of the fetched values."""
        check_namespace(namespace)
        if self._dimension is None and self._index_shape() is None:
            return
        for page in self._list_pages(namespace):
            found = self._fetch(namespace, page)
            yield [
                StoredRecord(
                    vid, str(metadata.get(HASH_KEY, "")), user_metadata(metadata), len(values)
                )
                for vid, (values, metadata) in found.items()
            ]

    def _list_pages(self, namespace: str) -> Iterable[list[str]]:
        from pinecone.errors import NotFoundError

        token: str | None = None
        while True:
            try:
                page = self._call(
                    "list",
                    partial(
                        self.index.list_paginated,
                        namespace=namespace,
                        limit=LIST_PAGE,
                        pagination_token=token,
                    ),
                )
            except NotFoundError:
                return  # no such namespace
            ids = [v.id for v in page.vectors if v.id]
            if ids:
                yield ids
            token = page.pagination.next if page.pagination else None
            if not token:
                return

    def _fetch(
        self, namespace: str, ids: Sequence[str]
    ) -> dict[str, tuple[list[float], dict[str, Any]]]:
        found: dict[str, tuple[list[float], dict[str, Any]]] = {}
        valid = [i for i in ids if _valid_id(i)]
        for start in range(0, len(valid), FETCH_CHUNK):
            chunk = valid[start : start + FETCH_CHUNK]
            fetch = partial(self.index.fetch, ids=chunk, namespace=namespace)
            response = self._call("fetch", fetch)
            for vid, vector in response.vectors.items():
                found[vid] = (list(vector.values), dict(vector.metadata or {}))
        return found

    # ------------------------------------------------------------------ retries
    def _run_batches(self, op: str, batches: Sequence[T], send: Callable[[T], None]) -> None:
        """Send every batch through the pool; resend only failed ones, at most ``max_rounds``."""
        pending = list(batches)
        for round_ in range(self.config.max_rounds):
            if not pending:
                return
            if round_:
                self.stats[f"{op}_retried_batches"] += len(pending)
            futures = [(b, self.pool.submit(self._counted, op, send, b)) for b in pending]
            failed: list[T] = []
            errors: list[BaseException] = []
            for batch, future in futures:
                exc = future.exception()
                if exc is None:
                    continue
                if not is_transient(exc):
                    _drain(futures)
                    raise _as_store_error(op, exc) from exc
                failed.append(batch)
                errors.append(exc)
            pending = failed
            if pending and round_ + 1 < self.config.max_rounds:
                logger.warning(
                    "Pinecone %s: %d of %d batches failed (%s); retrying those",
                    op,
                    len(pending),
                    len(batches),
                    errors[0],
                )
                # The longest Retry-After any batch was given sets the floor of the wait.
                asked = max(errors, key=lambda e: retry_after_of(e) or 0.0)
                time.sleep(self._wait.backoff(round_ + 1, asked))
        if pending:
            raise give_up(
                PineconeUnavailable(
                    f"Pinecone {op}: {len(pending)} of {len(batches)} batches still failed "
                    f"after {self.config.max_rounds} rounds (last error: {errors[-1]}). Nothing "
                    "is lost: re-run the task later; unchanged chunks are skipped."
                )
            )

    def _call(
        self,
        op: str,
        fn: Callable[[], T],
        retry_on: Callable[[BaseException], bool] = is_transient,
    ) -> T:
        """One request, tried up to ``max_rounds`` times on the same policy as batches (tenacity).

        Raises:
            PineconeUnavailable: (final) every try failed with a transient error.
            Exception: the SDK's error for anything else, e.g. ``NotFoundError``, as is.
        """
        policy = retrying(
            f"Pinecone {op}",
            attempts=self.config.max_rounds,
            base_s=self.config.retry_backoff_s,
            max_wait_s=self.config.max_backoff_s,
            retry_on=retry_on,
            log=logger,
        )
        try:
            result: T = policy(self._counted, op, lambda _: fn(), None)
            return result
        except Exception as exc:
            if not retry_on(exc):
                raise
            raise give_up(
                PineconeUnavailable(
                    f"Pinecone {op} failed {self.config.max_rounds} times (last error: {exc})."
                )
            ) from exc

    def _counted(self, op: str, send: Callable[[Any], T], arg: Any) -> T:
        with self._lock:
            self.stats[f"{op}_calls"] += 1
        return send(arg)

    def _note_lsn(self, info: Any) -> None:
        lsn = info.lsn_committed if info is not None else None
        if lsn is not None:
            with self._lock:
                self._written_lsn = max(lsn, self._written_lsn or 0)


class _PartialWrite(VectorStoreError):
    """Pinecone acknowledged fewer vectors than sent: resend the batch."""

    retryable = True  # what tasks.retry.is_transient reads


# ---------------------------------------------------------------------- pure helpers
def without_sdk_retries(index: Index) -> Index:
    """``index`` with the SDK's own retries off: the store is the one retry layer (module doc).

    pinecone 10.2 has no public setting for them on the data plane: ``RetryConfig`` reaches the
    control plane and gRPC only, and ``Pinecone.index()`` builds its REST transport with the
    default (3 retries of 408/429/5xx and dropped connections). So the transport's config is
    replaced here. Should the SDK's layout change, a warning says so, and the request counts
    asserted by tests/stores/test_pinecone_faults.py fail.
    """
    from pinecone import RetryConfig

    transport = getattr(getattr(getattr(index, "_http", None), "_client", None), "_transport", None)
    config = getattr(transport, "_config", None)
    if not isinstance(config, RetryConfig):
        logger.warning(
            "Could not switch off the Pinecone SDK's own retries (its client layout changed): "
            "failed requests are now retried by the SDK and by this store, which multiplies them."
        )
        return index
    transport._config = dataclasses.replace(config, max_retries=0)  # type: ignore[union-attr]
    return index


def float32_list(values: Sequence[float]) -> list[float]:
    """``values`` as Python floats with float32's shortest decimal form (~10 JSON bytes each)."""
    array = np.asarray(values, dtype=np.float32)
    parsed: list[float] = orjson.loads(orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY))
    return parsed


def pack_batches(
    items: Sequence[dict[str, Any]], namespace: str, max_bytes: int, max_vectors: int
) -> list[list[dict[str, Any]]]:
    """Split upsert items, in order, into requests under ``max_bytes`` and ``max_vectors``.

    Sizes are measured with the encoder the SDK uses (``orjson``) on the body it sends
    (``{"vectors": [...], "namespace": ...}``), so no request exceeds the limit.

    Raises:
        VectorStoreError: a single item does not fit in a request.
    """
    overhead = len(orjson.dumps({"vectors": [], "namespace": namespace}))
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = overhead
    for item in items:
        item_size = len(orjson.dumps(item))
        if overhead + item_size > max_bytes:
            raise VectorStoreError(
                f"Record {item['id']!r} alone is {item_size} bytes of JSON, over the "
                f"{max_bytes}-byte request limit."
            )
        extra = item_size + (1 if current else 0)  # the comma between items
        if current and (size + extra > max_bytes or len(current) >= max_vectors):
            batches.append(current)
            current, size, extra = [], overhead, item_size
        current.append(item)
        size += extra
    if current:
        batches.append(current)
    return batches


def stored_metadata(
    metadata: dict[str, Any],
    document_id: str,
    content_hash: str,
    text: str | None,
    max_bytes: int,
    record_id: str = "",
) -> tuple[dict[str, Any], bool]:
    """The metadata written to Pinecone and whether the chunk text fits in it.

    Raises:
        VectorStoreError: a value Pinecone cannot store, a reserved key, or metadata over
            ``max_bytes`` even without the text.
    """
    stored: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _RESERVED or key.endswith(TS_SUFFIX):
            raise VectorStoreError(
                f"Metadata key {key!r} of record {record_id!r} is reserved by the Pinecone store."
            )
        if value is None:
            continue  # Pinecone drops nulls; leaving the key out says the same
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise VectorStoreError(
                    f"Metadata {key!r} of record {record_id!r}: lists must hold strings only."
                )
        elif not isinstance(value, str | int | float | bool):
            raise VectorStoreError(
                f"Metadata {key!r} of record {record_id!r} is a {type(value).__name__}: "
                "Pinecone accepts strings, numbers, booleans and lists of strings."
            )
        stored[key] = value
        if isinstance(value, str) and (ts := iso_timestamp(value)) is not None:
            stored[key + TS_SUFFIX] = ts
    stored[DOC_KEY] = document_id
    stored[HASH_KEY] = content_hash
    if text is not None:
        with_text = {**stored, TEXT_KEY: text}
        if len(orjson.dumps(with_text)) <= max_bytes:
            return with_text, True
    size = len(orjson.dumps(stored))
    if size > max_bytes:
        raise VectorStoreError(
            f"Metadata of record {record_id!r} is {size} bytes without its text, over Pinecone's "
            f"{max_bytes}-byte limit. Declare fewer or shorter metadata columns."
        )
    return stored, text is None


def user_metadata(stored: dict[str, Any]) -> dict[str, Any]:
    """Stored metadata without the store's own keys."""
    shadows = {k for k in stored if k.endswith(TS_SUFFIX)}
    return {k: v for k, v in stored.items() if k not in _RESERVED and k not in shadows}


def iso_timestamp(value: str) -> float | None:
    """Epoch seconds of an ISO-8601 date or datetime string (naive = UTC), else None."""
    if not _ISO_DATE.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def translate_filter(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The project's filter (validated by ``parse_filter``) in Pinecone's filter language.

    Raises:
        VectorStoreError: invalid filter, or a range on a string that is not an ISO date.
    """
    terms: list[dict[str, Any]] = []
    for c in parse_filter(raw):
        if c.op == "$eq":
            terms.append({c.key: {"$eq": c.value}})
        elif c.op == "$in":
            values = c.value if isinstance(c.value, list) else [c.value]
            if any(isinstance(v, bool) for v in values):
                # Pinecone's $in takes strings and numbers; booleans become an $or of $eq.
                terms.append({"$or": [{c.key: {"$eq": v}} for v in values]})
            else:
                terms.append({c.key: {"$in": values}})
        elif isinstance(c.value, str):
            ts = iso_timestamp(c.value)
            if ts is None:
                raise VectorStoreError(
                    f"`{c.op}` on {c.key!r}: Pinecone compares numbers only; strings must be "
                    f"ISO dates like 2026-01-31 (got {c.value!r})."
                )
            terms.append({c.key + TS_SUFFIX: {c.op: ts}})
        else:
            terms.append({c.key: {c.op: c.value}})
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


def check_vector_id(vid: str) -> str:
    """``vid`` if Pinecone accepts it as a vector id (1-512 ASCII characters, no NUL)."""
    if not _valid_id(vid):
        raise VectorStoreError(
            f"Record id {vid[:60]!r} cannot be a Pinecone id: ids are 1-{MAX_ID_LENGTH} ASCII "
            "characters without NUL. Use shorter ASCII document keys (or hash them)."
        )
    return vid


def _valid_id(vid: str) -> bool:
    if not isinstance(vid, str) or not 0 < len(vid) <= MAX_ID_LENGTH:
        return False
    return vid.isascii() and "\x00" not in vid


def _dense_field(fields: dict[str, Any]) -> Any:
    from pinecone.models.indexes.schema import DenseVectorField

    dense = [f for f in fields.values() if isinstance(f, DenseVectorField)]
    return dense[0] if len(dense) == 1 else None


def _as_store_error(op: str, exc: BaseException) -> VectorStoreError:
    if isinstance(exc, VectorStoreError):
        return exc
    return VectorStoreError(f"Pinecone rejected a {op} request: {exc}")


def _drain(futures: Sequence[tuple[Any, Future[Any]]]) -> None:
    """Wait for the rest of a round before raising, so no request outlives the call."""
    for _, future in futures:
        future.exception()
