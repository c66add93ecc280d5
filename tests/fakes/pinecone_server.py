"""A local, protocol-faithful Pinecone server for tests: no account, no network, the real SDK.

What it speaks (REST, API version ``2026-07`` as sent by ``pinecone==10.2``):

Control plane (the server's own port, ``Pinecone(host=server.url)``)
    ``POST /indexes``, ``GET /indexes``, ``GET /indexes/{name}``, ``DELETE /indexes/{name}``.
    Create takes the 2026-07 body (``schema.fields._values`` = ``dense_vector`` with
    ``dimension``/``metric``; ``deployment`` = ``managed`` + ``cloud``/``region``); describe
    answers with ``schema``/``deployment``/``status``/``host``.

Data plane (one port per index, like Pinecone's per-index hosts; ``pc.index(host=...)``)
    ``POST /vectors/upsert``, ``POST /query``, ``GET /vectors/fetch``, ``POST /vectors/delete``,
    ``GET /vectors/list``, ``POST /describe_index_stats``, ``POST /vectors/update``.

Limits enforced as Pinecone documents them (400 ``INVALID_ARGUMENT`` unless noted): ≤ 1000 vectors
and ≤ 2 MB body per upsert, ≤ 40 KB metadata per vector (strings, numbers, booleans, lists of
strings; nulls are stripped), ids 1-512 ASCII characters, vector dimension = index dimension, at
least one non-zero value, topK ≤ 10,000, ≤ 1000 ids per fetch/delete, ≤ 100 ids per list page,
range operators on numbers only. Missing index/namespace → 404; bad/missing ``Api-Key`` → 401;
rate limit (``rate_limit_per_s``) → 429 with ``Retry-After``.

Search is brute force (numpy) with cosine, dotproduct or euclidean scores, best first, and
Pinecone's metadata filter language: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or``.

Freshness: writes are applied at once and visible to query/fetch/list, but with
``stats_lag_reads=N`` ``describe_index_stats`` keeps returning the previous counts for N calls
after a write (Pinecone is eventually consistent; its stats lag). Writes answer with an
``x-pinecone-request-lsn`` header, reads with ``x-pinecone-max-indexed-lsn`` (the LSN headers the
SDK reads into ``response_info``).

Fault injection (:class:`Faults`, switchable at run time through ``server.faults``): a fraction of
data-plane requests answered 429 or 5xx, "storms" of N consecutive 429s, slow responses, and
connections dropped before or after the write is applied. Every request is counted in
``server.counters`` (per operation and per status) and every accepted upsert's body size and
vector count is recorded in ``server.upserts``, so tests assert on behaviour, not timing.

Where the real service's behaviour is uncertain, the choice follows Pinecone's public API
reference (docs.pinecone.io/reference/api) and is marked ``# Uncertain:`` below.

Usage::

    with FakePinecone(api_key="test-key") as server:
        pc = Pinecone(api_key="test-key", host=server.url)
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson

# Uncertain: "2 MB" is read as 2,000,000 bytes (the stricter of 2,000,000 and 2 MiB).
MAX_UPSERT_BYTES = 2_000_000
MAX_UPSERT_VECTORS = 1000
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_TOP_K = 10_000
MAX_IDS_PER_REQUEST = 1000
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 100
MAX_BODY_BYTES = 8 * 1024 * 1024  # refuse to even read anything bigger

# gRPC status codes the data plane puts in its error bodies (it is a gRPC gateway).
_GRPC = {400: 3, 401: 16, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}
_CONTROL_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "UNKNOWN",
    503: "UNAVAILABLE",
}
_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}


class ApiFailure(Exception):
    """An error response: HTTP status and message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Faults:
    """Switchable fault injection for data-plane requests (control plane is never faulted).

    Fractions are probabilities per request, drawn from a seeded RNG so runs are reproducible.
    """

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    status_5xx: int = 503
    storm_429: int = 0  # the next N data-plane requests get 429
    slow_fraction: float = 0.0
    slow_seconds: float = 0.0
    drop_fraction: float = 0.0
    drop_after_apply: bool = False  # drop the connection after the write happened
    retry_after: str | None = "0"  # Retry-After header on 429/503 (None: omit it)
    only_ops: frozenset[str] | None = None  # restrict faults to these operations
    pass_first: int = 0  # the first N (matching) requests pass untouched: "outage after N"
    seed: int = 1234


@dataclass
class Namespace:
    """Vectors of one namespace: id -> (values, metadata)."""

    vectors: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    _matrix: tuple[list[str], np.ndarray] | None = None

    def matrix(self, dimension: int) -> tuple[list[str], np.ndarray]:
        if self._matrix is None:
            ids = sorted(self.vectors)
            values = (
                np.stack([self.vectors[i][0] for i in ids])
                if ids
                else np.zeros((0, dimension), dtype=np.float32)
            )
            self._matrix = (ids, values)
        return self._matrix

    def touch(self) -> None:
        self._matrix = None


@dataclass
class FakeIndex:
    """One index: its description, its data-plane server, its namespaces."""

    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    committed_lsn: int = 0
    indexed_lsn: int = 0
    stats_snapshot: dict[str, int] = field(default_factory=dict)
    stats_countdown: int = 0

    @property
    def host(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: (host, port), never bytes
        return f"http://{host}:{port}"

    def describe(self) -> dict[str, Any]:
        # Uncertain: the real service returns a scheme-less host ("name-abc.svc...pinecone.io")
        # that the SDK upgrades to https. This server is plain HTTP, so it says so explicitly.
        return {
            "name": self.name,
            "host": self.host,
            "status": {"ready": True, "state": "Ready"},
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self.dimension,
                        "metric": self.metric,
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",
                "cloud": self.cloud,
                "region": self.region,
            },
            "deletion_protection": "disabled",
            "tags": None,
        }

    def counts(self) -> dict[str, int]:
        return {ns: len(n.vectors) for ns, n in self.namespaces.items() if n.vectors}


class FakePinecone:
    """The server: control plane on :attr:`url`, one data-plane port per index."""

    def __init__(
        self,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        rate_limit_per_s: float | None = None,
        stats_lag_reads: int = 0,
        oversize_status: int = 400,
    ) -> None:
        self.api_key = api_key
        self.bind_host = host
        self.rate_limit_per_s = rate_limit_per_s
        self.stats_lag_reads = stats_lag_reads
        # Uncertain: Pinecone documents oversize upserts as 400 INVALID_ARGUMENT; the SDK's
        # docstring mentions 413 PayloadTooLargeError. Switchable; the store never relies on it.
        self.oversize_status = oversize_status
        self.faults = Faults()
        self.counters: Counter[str] = Counter()
        self.upserts: list[tuple[int, int]] = []  # (body bytes, vectors) per accepted upsert
        self.api_versions: set[str] = set()
        self.indexes: dict[str, FakeIndex] = {}
        self._lock = threading.RLock()
        self._rng = random.Random(self.faults.seed)
        self._seed = self.faults.seed
        self._bucket = (0.0, time.monotonic())
        self._control: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Control-plane URL (``http://127.0.0.1:PORT``)."""
        assert self._control is not None, "server not started"
        host, port = self._control.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: (host, port), never bytes
        return f"http://{host}:{port}"

    def start(self) -> FakePinecone:
        """Start the control plane on a free port."""
        self._control = self._serve(None)
        return self

    def stop(self) -> None:
        """Stop every server thread and close the sockets."""
        servers = [self._control] + [i.server for i in self.indexes.values()]
        closers = [
            threading.Thread(target=_close_server, args=(server,), daemon=True)
            for server in servers
            if server is not None
        ]
        for closer in closers:  # in parallel: each shutdown waits up to one poll interval
            closer.start()
        for thread in [*closers, *self._threads]:
            thread.join(timeout=5)
        self._threads.clear()
        self._control = None

    def __enter__(self) -> FakePinecone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, index: FakeIndex | None) -> ThreadingHTTPServer:
        handler = type("Handler", (_Handler,), {"fake": self, "index_name": index and index.name})
        server = ThreadingHTTPServer((self.bind_host, 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True, name="fake-pinecone")
        thread.start()
        self._threads.append(thread)
        return server

    # ----------------------------------------------------------------- test helpers
    def reset_counters(self) -> None:
        """Forget request counters and upsert records."""
        with self._lock:
            self.counters.clear()
            self.upserts.clear()

    def set_faults(self, **kwargs: Any) -> None:
        """Replace the fault settings (``set_faults()`` switches everything off)."""
        with self._lock:
            self.faults = Faults(**kwargs)
            self._rng = random.Random(self.faults.seed)

    @contextmanager
    def faulty(self, **kwargs: Any) -> Iterator[Faults]:
        """Faults on inside the block, off after it."""
        self.set_faults(**kwargs)
        try:
            yield self.faults
        finally:
            self.set_faults()

    def vectors(self, index: str, namespace: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """What the server holds (for assertions): id -> (values, metadata)."""
        idx = self.indexes[index]
        with idx.lock:
            ns = idx.namespaces.get(namespace, Namespace())
            return {i: (v.tolist(), dict(m)) for i, (v, m) in ns.vectors.items()}

    # ----------------------------------------------------------------- faults / limits
    def _inject(self, op: str) -> str | None:
        """Decide this request's fault: None, '429', '5xx', 'drop', 'drop-after', with a delay."""
        with self._lock:
            f = self.faults
            if f.only_ops is not None and op not in f.only_ops:
                return None
            if f.pass_first > 0:
                f.pass_first -= 1
                return None
            if f.storm_429 > 0:
                f.storm_429 -= 1
                return "429"
            r = self._rng.random
            delay = f.slow_seconds if f.slow_fraction and r() < f.slow_fraction else 0.0
            if f.rate_429 and r() < f.rate_429:
                outcome: str | None = "429"
            elif f.rate_5xx and r() < f.rate_5xx:
                outcome = "5xx"
            elif f.drop_fraction and r() < f.drop_fraction:
                outcome = "drop-after" if f.drop_after_apply else "drop"
            else:
                outcome = None
        if delay:
            time.sleep(delay)
        return outcome

    def _rate_limited(self) -> bool:
        """Token bucket of ``rate_limit_per_s`` requests per second (burst = 1 s worth)."""
        if not self.rate_limit_per_s:
            return False
        with self._lock:
            tokens, last = self._bucket
            now = time.monotonic()
            tokens = min(self.rate_limit_per_s, tokens + (now - last) * self.rate_limit_per_s)
            if tokens < 1:
                self._bucket = (tokens, now)
                return True
            self._bucket = (tokens - 1, now)
            return False

    # ----------------------------------------------------------------- control plane
    def create_index(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiFailure(400, "Missing required field: name")
        fields = (body.get("schema") or {}).get("fields") or {}
        dense = [f for f in fields.values() if f.get("type") == "dense_vector"]
        if len(dense) != 1:
            raise ApiFailure(400, "schema must declare exactly one dense_vector field")
        dimension, metric = dense[0].get("dimension"), dense[0].get("metric", "cosine")
        if not isinstance(dimension, int) or not 1 <= dimension <= 20_000:
            raise ApiFailure(400, "dimension must be an integer between 1 and 20000")
        if metric not in ("cosine", "dotproduct", "euclidean"):
            raise ApiFailure(400, f"Invalid metric {metric!r}")
        deployment = body.get("deployment") or {}
        with self._lock:
            if name in self.indexes:
                raise ApiFailure(409, f"Resource {name} already exists")
            index = FakeIndex(
                name=name,
                dimension=dimension,
                metric=metric,
                cloud=deployment.get("cloud", "aws"),
                region=deployment.get("region", "us-east-1"),
            )
            index.server = self._serve(index)
            self.indexes[name] = index
        return 201, index.describe()

    def describe_index(self, name: str) -> dict[str, Any]:
        index = self.indexes.get(name)
        if index is None:
            raise ApiFailure(404, f"Resource {name} not found")
        return index.describe()

    def delete_index(self, name: str) -> None:
        with self._lock:
            index = self.indexes.pop(name, None)
        if index is None:
            raise ApiFailure(404, f"Resource {name} not found")
        assert index.server is not None
        threading.Thread(target=_close_server, args=(index.server,), daemon=True).start()

    # ----------------------------------------------------------------- data plane
    def upsert(self, index: FakeIndex, body: dict[str, Any], size: int) -> dict[str, Any]:
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ApiFailure(400, "vectors must be a non-empty list")
        if size > MAX_UPSERT_BYTES:
            raise ApiFailure(
                self.oversize_status,
                f"Request size {size} bytes exceeds the maximum supported size of "
                f"{MAX_UPSERT_BYTES} bytes",
            )
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise ApiFailure(
                400,
                f"Batch size {len(vectors)} exceeds the maximum of {MAX_UPSERT_VECTORS} vectors",
            )
        parsed = [self._parse_vector(index, v) for v in vectors]  # all-or-nothing
        namespace = _namespace(body)
        with index.lock:
            ns = index.namespaces.setdefault(namespace, Namespace())
            for vid, values, metadata in parsed:
                ns.vectors[vid] = (values, metadata)
            ns.touch()
            lsn = self._commit(index)
        with self._lock:
            self.upserts.append((size, len(parsed)))
        return {"upsertedCount": len(parsed), "_lsn": lsn}

    def _parse_vector(self, index: FakeIndex, item: Any) -> tuple[str, np.ndarray, dict[str, Any]]:
        if not isinstance(item, dict):
            raise ApiFailure(400, "Each vector must be an object")
        vid = _check_id(item.get("id"))
        values = item.get("values")
        if not isinstance(values, list) or len(values) != index.dimension:
            got = len(values) if isinstance(values, list) else 0
            raise ApiFailure(
                400,
                f"Vector dimension {got} does not match the dimension of the index "
                f"{index.dimension}",
            )
        array = np.asarray(values, dtype=np.float32)
        if not np.any(array):
            raise ApiFailure(400, "Dense vectors must contain at least one non-zero value")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ApiFailure(400, "metadata must be an object")
        size = len(orjson.dumps(metadata))
        if size > MAX_METADATA_BYTES:
            raise ApiFailure(
                400,
                f"Metadata size is {size} bytes, which exceeds the limit of "
                f"{MAX_METADATA_BYTES} bytes per vector",
            )
        clean: dict[str, Any] = {}
        for key, value in metadata.items():
            if value is None:
                continue  # the server strips nulls on write (see the SDK's _validate_metadata)
            if isinstance(value, bool | str):
                clean[key] = value
            elif isinstance(value, int | float):
                clean[key] = float(value)  # metadata numbers are 64-bit floats
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                clean[key] = list(value)
            else:
                raise ApiFailure(
                    400,
                    f"Metadata value for field {key!r} must be a string, number, boolean or "
                    "list of strings",
                )
        return vid, array, clean

    def query(self, index: FakeIndex, body: dict[str, Any]) -> dict[str, Any]:
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ApiFailure(400, f"topK must be between 1 and {MAX_TOP_K}")
        namespace = _namespace(body)
        match = _compile_filter(body.get("filter"))
        with index.lock:
            ns = index.namespaces.get(namespace)
            if "id" in body:
                if ns is None or body["id"] not in ns.vectors:
                    vector = None
                else:
                    vector = ns.vectors[body["id"]][0]
            else:
                raw = body.get("vector")
                if not isinstance(raw, list) or len(raw) != index.dimension:
                    got = len(raw) if isinstance(raw, list) else 0
                    raise ApiFailure(
                        400,
                        f"Query vector dimension {got} does not match the dimension of the "
                        f"index {index.dimension}",
                    )
                vector = np.asarray(raw, dtype=np.float32)
            matches: list[dict[str, Any]] = []
            if ns is not None and vector is not None and ns.vectors:
                ids, matrix = ns.matrix(index.dimension)
                keep = [i for i, vid in enumerate(ids) if match(ns.vectors[vid][1])]
                if keep:
                    scores = _scores(index.metric, matrix[keep], vector)
                    order = np.argsort(-scores if index.metric != "euclidean" else scores)
                    for j in order[:top_k]:
                        vid = ids[keep[j]]
                        values, metadata = ns.vectors[vid]
                        hit: dict[str, Any] = {"id": vid, "score": float(scores[j])}
                        if body.get("includeValues"):
                            hit["values"] = values.tolist()
                        if body.get("includeMetadata"):
                            hit["metadata"] = metadata
                        matches.append(hit)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}

    def fetch(self, index: FakeIndex, params: dict[str, list[str]]) -> dict[str, Any]:
        ids = params.get("ids", [])
        if not ids:
            raise ApiFailure(400, "ids must be a non-empty list")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise ApiFailure(400, f"Fetch accepts at most {MAX_IDS_PER_REQUEST} ids")
        namespace = (params.get("namespace") or [""])[0]
        with index.lock:
            ns = index.namespaces.get(namespace, Namespace())
            found = {
                i: {"id": i, "values": ns.vectors[i][0].tolist(), "metadata": ns.vectors[i][1]}
                for i in ids
                if i in ns.vectors
            }
        return {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

    def list_ids(self, index: FakeIndex, params: dict[str, list[str]]) -> dict[str, Any]:
        namespace = (params.get("namespace") or [""])[0]
        prefix = (params.get("prefix") or [""])[0]
        limit = int((params.get("limit") or [str(DEFAULT_LIST_LIMIT)])[0])
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ApiFailure(400, f"limit must be between 1 and {MAX_LIST_LIMIT}")
        tokens = params.get("paginationToken")
        token = tokens[0] if tokens else None
        with index.lock:
            ns = index.namespaces.get(namespace)
            if ns is None:
                # Uncertain: listing a missing namespace answers 404 on serverless.
                raise ApiFailure(404, f"Namespace {namespace!r} not found")
            ids = sorted(i for i in ns.vectors if i.startswith(prefix))
        # The token is the last id of the previous page (opaque to clients).
        start = 0
        if token:
            start = next((n for n, i in enumerate(ids) if i > token), len(ids))
        page = ids[start : start + limit]
        result: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if start + limit < len(ids):
            result["pagination"] = {"next": page[-1]}
        return result

    def delete(self, index: FakeIndex, body: dict[str, Any]) -> dict[str, Any]:
        namespace = _namespace(body)
        ids, delete_all, flt = body.get("ids"), body.get("deleteAll"), body.get("filter")
        if sum(x is not None and x is not False for x in (ids, delete_all, flt)) != 1:
            raise ApiFailure(400, "Exactly one of ids, deleteAll or filter must be set")
        if ids is not None and len(ids) > MAX_IDS_PER_REQUEST:
            raise ApiFailure(400, f"Delete accepts at most {MAX_IDS_PER_REQUEST} ids")
        with index.lock:
            ns = index.namespaces.get(namespace)
            if ns is None:
                # Uncertain: serverless answers 404 "Namespace not found" here.
                raise ApiFailure(404, f"Namespace {namespace!r} not found")
            if delete_all:
                ns.vectors.clear()
            elif ids is not None:
                for vid in ids:
                    ns.vectors.pop(vid, None)
            else:
                match = _compile_filter(flt)
                for vid in [i for i, (_, m) in ns.vectors.items() if match(m)]:
                    del ns.vectors[vid]
            ns.touch()
            if not ns.vectors:
                del index.namespaces[namespace]  # empty namespaces disappear
            lsn = self._commit(index)
        return {"_lsn": lsn}

    def update(self, index: FakeIndex, body: dict[str, Any]) -> dict[str, Any]:
        namespace = _namespace(body)
        vid = body.get("id")
        if vid is None:
            raise ApiFailure(400, "This server supports update by id only")
        metadata = body.get("setMetadata") or {}
        values = body.get("values")
        with index.lock:
            ns = index.namespaces.get(namespace)
            if ns is None or vid not in ns.vectors:
                # Uncertain: the reference does not say; 404 is what a by-id update of a
                # missing record is documented to return for pod indexes.
                raise ApiFailure(404, f"Vector {vid!r} not found in namespace {namespace!r}")
            old_values, old_metadata = ns.vectors[vid]
            check = {
                "id": vid,
                "values": values if values is not None else old_values.tolist(),
                "metadata": {**old_metadata, **metadata},
            }
            _, new_values, new_metadata = self._parse_vector(index, check)
            ns.vectors[vid] = (new_values, new_metadata)
            ns.touch()
            lsn = self._commit(index)
        return {"_lsn": lsn}

    def describe_stats(self, index: FakeIndex, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("filter"):
            raise ApiFailure(400, "describe_index_stats does not support filters on serverless")
        with index.lock:
            if index.stats_countdown > 0:
                index.stats_countdown -= 1
            else:
                index.stats_snapshot = index.counts()
                index.indexed_lsn = index.committed_lsn
            counts = dict(index.stats_snapshot)
            lsn = index.indexed_lsn
        return {
            "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
            "dimension": index.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": index.metric,
            "vectorType": "dense",
            "_read_lsn": lsn,
        }

    def _commit(self, index: FakeIndex) -> int:
        index.committed_lsn += 1
        if self.stats_lag_reads:
            index.stats_countdown = self.stats_lag_reads
        return index.committed_lsn


def _close_server(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def _namespace(body: dict[str, Any]) -> str:
    namespace = body.get("namespace") or ""
    if not isinstance(namespace, str):
        raise ApiFailure(400, "namespace must be a string")
    return namespace


def _check_id(vid: Any) -> str:
    if not isinstance(vid, str) or not 1 <= len(vid) <= MAX_ID_LENGTH:
        raise ApiFailure(400, f"Vector ID must be 1-{MAX_ID_LENGTH} characters")
    if not vid.isascii() or "\x00" in vid:
        raise ApiFailure(400, f"Vector ID must be ASCII without NUL characters: {vid[:40]!r}")
    return vid


def _scores(metric: str, matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    scores: np.ndarray  # numpy's operators on untyped arrays return Any
    if metric == "dotproduct":
        scores = matrix @ vector
    elif metric == "euclidean":
        # Uncertain: Pinecone reports the squared euclidean distance; lower ranks first.
        scores = ((matrix - vector) ** 2).sum(axis=1)
    else:
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(vector) or 1.0)
        scores = (matrix @ vector) / np.where(norms == 0, 1.0, norms)
    return scores


# ------------------------------------------------------------------------- filters
Predicate = Callable[[dict[str, Any]], bool]
"""A compiled filter: does this record's metadata match?"""


def _compile_filter(flt: Any) -> Predicate:
    """A predicate over metadata for Pinecone's filter language; 400 on malformed filters."""
    if flt is None or flt == {}:
        return lambda metadata: True
    if not isinstance(flt, dict):
        raise ApiFailure(400, "filter must be an object")
    terms: list[Predicate] = []
    for key, spec in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(spec, list) or not spec:
                raise ApiFailure(400, f"{key} needs a non-empty list of filters")
            subs = [_compile_filter(s) for s in spec]
            terms.append(_combine(all if key == "$and" else any, subs))
            continue
        if key.startswith("$"):
            raise ApiFailure(400, f"Unknown top-level operator {key}")
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        for op, value in ops.items():
            terms.append(_compile_op(key, op, value))
    return lambda m: all(t(m) for t in terms)


def _combine(quantifier: Callable[[Iterator[bool]], bool], subs: list[Predicate]) -> Predicate:
    """``$and`` (``all``) or ``$or`` (``any``) over the compiled sub-filters."""
    return lambda m: quantifier(s(m) for s in subs)


def _compile_op(key: str, op: str, value: Any) -> Predicate:
    scalar = (str, int, float, bool)
    if op in ("$eq", "$ne"):
        if not isinstance(value, scalar):
            raise ApiFailure(400, f"{op} on {key!r} needs a string, number or boolean")

        def eq(m: dict[str, Any]) -> bool:
            if key not in m:
                return False
            got = m[key]
            return value in got if isinstance(got, list) else _same(got, value)

        if op == "$eq":
            return eq
        # Uncertain: $ne matches records that lack the key, as Pinecone's reference states.
        return lambda m: not eq(m)
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            raise ApiFailure(400, f"{op} on {key!r} needs a list of strings or numbers")

        def contained(m: dict[str, Any]) -> bool:
            if key not in m:
                return False
            got = m[key]
            values = got if isinstance(got, list) else [got]
            return any(_same(g, v) for g in values for v in value)

        return contained if op == "$in" else (lambda m: not contained(m))
    if op in _RANGE_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiFailure(400, f"{op} on {key!r} supports numbers only")

        def compare(m: dict[str, Any]) -> bool:
            got = m.get(key)
            if isinstance(got, bool) or not isinstance(got, int | float):
                return False
            return bool(
                {
                    "$gt": got > value,
                    "$gte": got >= value,
                    "$lt": got < value,
                    "$lte": got <= value,
                }[op]
            )

        return compare
    if op == "$exists":
        if not isinstance(value, bool):
            raise ApiFailure(400, f"$exists on {key!r} needs a boolean")
        return lambda m: (key in m) == value
    raise ApiFailure(400, f"Unknown filter operator {op}")


def _same(a: Any, b: Any) -> bool:
    # Booleans never equal numbers in Pinecone metadata (True != 1).
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


# ------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    fake: FakePinecone
    index_name: str | None
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the per-request stderr log."""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        op = self._operation(method, url.path)
        with fake._lock:
            fake.counters[op] += 1
            fake.counters["requests"] += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(op, ApiFailure(413, "Request body too large"))
            return
        raw = self.rfile.read(length) if length else b""
        version = self.headers.get("X-Pinecone-Api-Version")
        if version:
            fake.api_versions.add(version)
        try:
            if self.headers.get("Api-Key") != fake.api_key:
                raise ApiFailure(401, "Invalid API Key")
            if op == "unknown":
                raise ApiFailure(404, f"No route for {method} {url.path}")
            fault = None
            if self.index_name is not None:
                if fake._rate_limited():
                    raise ApiFailure(429, "Request rate limit exceeded", {"Retry-After": "1"})
                fault = fake._inject(op)
                if fault == "drop":
                    self._drop()
                    return
                if fault in ("429", "5xx"):
                    status = 429 if fault == "429" else fake.faults.status_5xx
                    headers = {}
                    if fake.faults.retry_after is not None and status in (429, 503):
                        headers["Retry-After"] = fake.faults.retry_after
                    raise ApiFailure(status, f"Injected fault ({status})", headers)
            body = orjson.loads(raw) if raw else {}
            status, result = self._handle(op, method, url, body, len(raw))
            if fault == "drop-after":
                self._drop()
                return
            self._send(op, status, result)
        except ApiFailure as failure:
            self._error(op, failure)
        except orjson.JSONDecodeError:
            self._error(op, ApiFailure(400, "Request body is not valid JSON"))

    def _operation(self, method: str, path: str) -> str:
        if self.index_name is None:
            if path == "/indexes":
                return {"GET": "list_indexes", "POST": "create_index"}.get(method, "unknown")
            if path.startswith("/indexes/") and path.count("/") == 2:
                return {"GET": "describe_index", "DELETE": "delete_index"}.get(method, "unknown")
            return "unknown"
        routes = {
            ("POST", "/vectors/upsert"): "upsert",
            ("POST", "/query"): "query",
            ("GET", "/vectors/fetch"): "fetch",
            ("GET", "/vectors/list"): "list",
            ("POST", "/vectors/delete"): "delete",
            ("POST", "/vectors/update"): "update",
            ("POST", "/describe_index_stats"): "describe_index_stats",
            ("GET", "/describe_index_stats"): "describe_index_stats",
        }
        return routes.get((method, path), "unknown")

    def _handle(
        self, op: str, method: str, url: Any, body: dict[str, Any], size: int
    ) -> tuple[int, dict[str, Any] | None]:
        fake = self.fake
        if self.index_name is None:
            if op == "create_index":
                return fake.create_index(body)
            if op == "list_indexes":
                return 200, {"indexes": [i.describe() for i in fake.indexes.values()]}
            name = url.path.rsplit("/", 1)[1]
            if op == "describe_index":
                return 200, fake.describe_index(name)
            fake.delete_index(name)
            return 202, None
        index = fake.indexes.get(self.index_name)
        if index is None:
            raise ApiFailure(404, f"Index {self.index_name} not found")
        params = parse_qs(url.query)
        handlers = {
            "upsert": lambda: fake.upsert(index, body, size),
            "query": lambda: fake.query(index, body),
            "fetch": lambda: fake.fetch(index, params),
            "list": lambda: fake.list_ids(index, params),
            "delete": lambda: fake.delete(index, body),
            "update": lambda: fake.update(index, body),
            "describe_index_stats": lambda: fake.describe_stats(index, body),
        }
        return 200, handlers[op]()

    def _send(self, op: str, status: int, result: dict[str, Any] | None) -> None:
        headers: dict[str, str] = {}
        if result is not None:
            if "_lsn" in result:
                headers["x-pinecone-request-lsn"] = str(result.pop("_lsn"))
            if "_read_lsn" in result:
                headers["x-pinecone-max-indexed-lsn"] = str(result.pop("_read_lsn"))
        payload = orjson.dumps(result) if result is not None else b""
        with self.fake._lock:
            self.fake.counters[f"{op}:{status}"] += 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, op: str, failure: ApiFailure) -> None:
        if self.index_name is None:
            code = _CONTROL_CODES.get(failure.status, "UNKNOWN")
            body: dict[str, Any] = {
                "error": {"code": code, "message": failure.message},
                "status": failure.status,
            }
        else:
            # The data plane is a gRPC gateway: {"code": <grpc status>, "message", "details"}.
            body = {"code": _GRPC.get(failure.status, 2), "message": failure.message, "details": []}
        payload = orjson.dumps(body)
        with self.fake._lock:
            self.fake.counters[f"{op}:{failure.status}"] += 1
        self.send_response(failure.status)
        for name, value in failure.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        with self.fake._lock:
            self.fake.counters["dropped"] += 1
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(2)


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground: ``python -m tests.fakes.pinecone_server``."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rate-limit-per-s", type=float, default=None)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every data-plane response"
    )
    args = parser.parse_args(argv)
    server = FakePinecone(args.api_key, args.host, rate_limit_per_s=args.rate_limit_per_s)
    if args.latency_ms:
        server.set_faults(slow_fraction=1.0, slow_seconds=args.latency_ms / 1000)
    server.start()
    print(server.url, flush=True)  # the one line callers read
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
