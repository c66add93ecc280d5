"""The embedder interface: texts in, unit-length vectors out, packed into requests.

The base class owns everything that is the same for every provider (timescale/pgai's pattern):
counting tokens once (:meth:`Embedder.count_tokens`, the public entry point), cutting over-long
inputs by the provider's policy, packing inputs into requests within the provider's limits
(:func:`pack_requests`), grouping requests into the windows the indexer embeds and commits one at
a time, running a window's requests (concurrently where the provider allows it) and the usage
counters. A provider declares its limits (:attr:`~Embedder.batch_size` inputs per request,
:attr:`~Embedder.max_request_tokens`, :attr:`~Embedder.max_input_tokens`,
:attr:`~Embedder.max_concurrency`) and implements one API call, :meth:`Embedder._embed_batch`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from tasks.errors import EmbeddingError, PipelineError

logger = logging.getLogger(__name__)

#: What to do with an input longer than the model's limit: cut it to the limit, embed its
#: pieces and average them, or (``None``) send it whole and let the model truncate it.
OversizePolicy = Literal["truncate", "split"] | None


class EmbeddingQuotaExceeded(EmbeddingError):
    """The provider says the account has no quota left (OpenAI ``insufficient_quota``)."""

    retryable = False


class MalformedResponse(EmbeddingError):
    """The provider answered 2xx with a body we cannot use: retried like a 5xx (transient)."""

    retryable = True


class InputRejected(EmbeddingError):
    """The provider rejected a request for its content (OpenAI's 400 for an input it cannot
    embed): a retry of the same inputs cannot fix it, but the request's other inputs may be fine.

    Whole-request problems (a bad API key, no quota, an unknown model) are other errors: they
    fail the run. :meth:`Embedder.embed_partial` bisects a rejected request down to its poison
    inputs; :meth:`Embedder.embed` raises this as it is.
    """

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status the provider answered, when there is one.
        self.status = status

    @property
    def error_class(self) -> str:
        """A short name of the rejection for the dead-letter table, e.g. ``http_400``."""
        return f"http_{self.status}" if self.status is not None else type(self).__name__


@dataclass(frozen=True)
class Rejection:
    """Why the provider would not embed one input (see :meth:`Embedder.embed_partial`)."""

    error_class: str
    message: str


class EmbeddingBudgetExceeded(PipelineError):
    """A run would embed more tokens than ``MAX_TOKENS_PER_RUN`` allows; nothing was sent."""

    retryable = False


@dataclass
class Usage:
    """What an embedder has spent since it was created (or last reset)."""

    requests: int = 0
    inputs: int = 0
    input_tokens: int = 0
    #: Of ``input_tokens``, those billed through a batch API at its discount
    #: (:mod:`tasks.embedders.openai_batch`).
    batch_input_tokens: int = 0

    def snapshot(self) -> Usage:
        """A copy (to diff before/after a run)."""
        return Usage(self.requests, self.inputs, self.input_tokens, self.batch_input_tokens)

    def minus(self, other: Usage) -> Usage:
        """Usage since ``other`` was taken."""
        return Usage(
            self.requests - other.requests,
            self.inputs - other.inputs,
            self.input_tokens - other.input_tokens,
            self.batch_input_tokens - other.batch_input_tokens,
        )

    def plus(self, other: Usage) -> Usage:
        """This usage and ``other`` together (e.g. what shards in other processes spent)."""
        return Usage(
            self.requests + other.requests,
            self.inputs + other.inputs,
            self.input_tokens + other.input_tokens,
            self.batch_input_tokens + other.batch_input_tokens,
        )

    def cost_usd(self, price_per_million: float, batch_price_factor: float = 1.0) -> float:
        """What these tokens cost: batch tokens at ``batch_price_factor`` of the price."""
        full = self.input_tokens - self.batch_input_tokens
        return (full + self.batch_input_tokens * batch_price_factor) * price_per_million / 1e6


@dataclass(frozen=True)
class Embedded:
    """One request's vectors and, when the provider reports it, the tokens it billed."""

    vectors: list[list[float]]
    input_tokens: int | None = None


class Embedder(ABC):
    """Turns texts into vectors. One instance per process; load models lazily.

    Providers implement :attr:`dimension`, :attr:`batch_size` and :meth:`_embed_batch` (one API
    or model call), and override the other limits and :meth:`count_tokens` where they differ.
    """

    #: Provider name, e.g. ``local`` or ``openai``.
    provider: str
    #: Model name as configured.
    model: str

    # --- what a provider implements ---

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""

    @property
    @abstractmethod
    def batch_size(self) -> int:
        """Most inputs sent in one model call / request."""

    @abstractmethod
    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]] | Embedded:
        """Embed ``texts`` (within every limit already) in one call, vectors in input order.

        Return :class:`Embedded` to report the tokens the provider billed; a plain list of
        vectors is counted with the token counts :meth:`embed` already has.
        """

    # --- the provider's limits (defaults suit an in-process model) ---

    @property
    def max_input_tokens(self) -> int:
        """Longest input (in tokens) the model embeds without truncating."""
        return 512

    @property
    def max_request_tokens(self) -> int | None:
        """Most tokens in one request, all inputs together (``None``: no such limit)."""
        return None

    @property
    def max_concurrency(self) -> int:
        """Requests of one window run at the same time (1: an in-process model, one call at a
        time; its tokenizer and its threads are not made for concurrent calls)."""
        return 1

    @property
    def requests_per_window(self) -> int:
        """Requests per window (:meth:`windows`): what the indexer embeds, caches and commits
        before the next; smaller windows lose less work when a run dies."""
        return 4

    @property
    def oversize_policy(self) -> OversizePolicy:
        """How inputs over :attr:`max_input_tokens` are handled (see :data:`OversizePolicy`)."""
        return None

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` with the model's tokenizer (approximate by default).

        The one token-counting entry point: chunking, the index's token budget, request
        packing and the search query limit all count with it.
        """
        return [approx_tokens(t) for t in texts]

    def _cut(self, text: str, limit: int) -> list[str]:
        """``text`` as consecutive pieces of at most ``limit`` tokens (providers with a
        tokenizer cut on its token boundaries)."""
        step = limit * 3  # approx_tokens: 3 bytes per token; cut on chars, conservatively
        return [text[i : i + step] for i in range(0, len(text), step)]

    # --- usage ---

    @property
    def usage(self) -> Usage:
        """Cumulative usage counters of this instance."""
        if not hasattr(self, "_usage"):
            self._usage = Usage()
            self._usage_lock = threading.Lock()
        return self._usage

    def _count_usage(self, inputs: int, tokens: int, *, batch: bool = False) -> None:
        usage = self.usage
        with self._usage_lock:
            usage.requests += 1
            usage.inputs += inputs
            usage.input_tokens += tokens
            if batch:
                usage.batch_input_tokens += tokens

    # --- packing ---

    def pack(self, token_counts: Sequence[int]) -> list[tuple[int, int]]:
        """``[start, end)`` request slices of inputs with ``token_counts``, within the limits."""
        return pack_requests(
            token_counts,
            max_inputs=self.batch_size,
            max_tokens=self.max_request_tokens,
            max_input_tokens=self.max_input_tokens,
        )

    def windows(self, token_counts: Sequence[int]) -> list[tuple[int, int]]:
        """Contiguous ``[start, end)`` slices the indexer embeds and caches one at a time:
        :attr:`requests_per_window` whole requests each, so packing stays minimal."""
        requests = self.pack(token_counts)
        per = max(1, self.requests_per_window)
        return [
            (requests[i][0], requests[min(i + per, len(requests)) - 1][1])
            for i in range(0, len(requests), per)
        ]

    # --- embedding ---

    def embed(
        self, texts: Sequence[str], *, token_counts: Sequence[int] | None = None
    ) -> list[list[float]]:
        """Embed ``texts``, preserving order: over-long inputs by :attr:`oversize_policy`,
        packed into as few requests as the limits allow.

        ``token_counts`` (from :meth:`count_tokens`), when the caller already has them, spares
        counting ``texts`` again.
        """
        if not texts:
            return []
        pieces, piece_tokens, owners, requests = self._plan_requests(texts, token_counts)
        results: list[list[list[float]]] = [[] for _ in requests]

        def run(k: int) -> None:
            s, e = requests[k]
            results[k] = self._request(pieces[s:e], sum(piece_tokens[s:e]))

        self._run_requests(run, len(requests))
        flat = [v for chunk in results for v in chunk]
        if owners is None:
            return flat
        return combine_pieces(flat, piece_tokens, owners, len(texts))

    def embed_partial(
        self, texts: Sequence[str], *, token_counts: Sequence[int] | None = None
    ) -> tuple[dict[int, list[float]], dict[int, Rejection]]:
        """Like :meth:`embed`, but an input the provider rejects (:class:`InputRejected`) does
        not fail the others: ``({position: vector}, {position: rejection})``.

        A rejected request is split in halves and each half re-sent, down to the single poison
        input (about ``2 * log2(n)`` extra requests per poison input). An input sent in pieces
        (``oversize_policy="split"``) is rejected when any of its pieces is. Every other error
        (auth, quota, unknown model, transient errors after the retries) still raises.
        """
        if not texts:
            return {}, {}
        pieces, piece_tokens, owners, requests = self._plan_requests(texts, token_counts)
        outcomes: list[tuple[dict[int, list[float]], dict[int, Rejection]]] = [
            ({}, {}) for _ in requests
        ]

        def run(k: int) -> None:
            outcomes[k] = self._request_bisecting(pieces, piece_tokens, *requests[k])

        self._run_requests(run, len(requests))
        vectors = {i: v for got, _ in outcomes for i, v in got.items()}
        rejected = {i: r for _, bad in outcomes for i, r in bad.items()}
        if owners is None:
            return vectors, rejected
        # Pieces back to inputs: an input with a rejected piece is rejected as a whole.
        bad_inputs = {owners[i]: r for i, r in rejected.items()}
        keep = [i for i in range(len(pieces)) if owners[i] not in bad_inputs]
        kept_owners = sorted({owners[i] for i in keep})
        renumber = {owner: n for n, owner in enumerate(kept_owners)}
        combined = combine_pieces(
            [vectors[i] for i in keep],
            [piece_tokens[i] for i in keep],
            [renumber[owners[i]] for i in keep],
            len(kept_owners),
        )
        return dict(zip(kept_owners, combined, strict=True)), bad_inputs

    def _plan_requests(
        self, texts: Sequence[str], token_counts: Sequence[int] | None
    ) -> tuple[Sequence[str], Sequence[int], list[int] | None, list[tuple[int, int]]]:
        """The pieces to send (over-long inputs cut), their token counts, the input each piece
        belongs to (``None`` when nothing was cut) and the requests packing them."""
        if token_counts is None:
            token_counts = self.count_tokens(texts)
        elif len(token_counts) != len(texts):
            raise ValueError(f"{len(token_counts)} token counts for {len(texts)} texts")
        pieces, piece_tokens, owners = self._cut_oversize(texts, token_counts)
        return pieces, piece_tokens, owners, self.pack(piece_tokens)

    def _request_bisecting(
        self, pieces: Sequence[str], tokens: Sequence[int], start: int, end: int
    ) -> tuple[dict[int, list[float]], dict[int, Rejection]]:
        """One request for ``pieces[start:end]``; when it is rejected for its content, the two
        halves again (recursively), so only the poison inputs end up rejected."""
        try:
            got = self._request(pieces[start:end], sum(tokens[start:end]))
        except InputRejected as exc:
            if end - start == 1:
                logger.warning("Input rejected by %s: %s", self.provider, exc)
                return {}, {start: Rejection(exc.error_class, str(exc))}
            mid = (start + end) // 2
            left, left_bad = self._request_bisecting(pieces, tokens, start, mid)
            right, right_bad = self._request_bisecting(pieces, tokens, mid, end)
            return {**left, **right}, {**left_bad, **right_bad}
        return dict(enumerate(got, start)), {}

    def _run_requests(self, run: Callable[[int], None], count: int) -> None:
        """``run(k)`` for each of ``count`` requests, up to :attr:`max_concurrency` at once."""
        workers = min(self.max_concurrency, count)
        if workers <= 1:
            for k in range(count):
                run(k)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(run, k) for k in range(count)]:
                    future.result()

    def embed_query(self, text: str, *, token_count: int | None = None) -> list[float]:
        """Embed one search query (``token_count``: its :meth:`count_tokens`, if known)."""
        counts = None if token_count is None else [token_count]
        return self.embed([text], token_counts=counts)[0]

    def _cut_oversize(
        self, texts: Sequence[str], token_counts: Sequence[int]
    ) -> tuple[Sequence[str], Sequence[int], list[int] | None]:
        """The pieces to send, their token counts and the input each belongs to (``None``
        when every input is sent whole, the usual case)."""
        limit = self.max_input_tokens
        policy = self.oversize_policy
        if policy is None or max(token_counts) <= limit:
            return texts, token_counts, None
        pieces: list[str] = []
        piece_tokens: list[int] = []
        owners: list[int] = []
        for i, (text, n) in enumerate(zip(texts, token_counts, strict=True)):
            if n <= limit:
                pieces.append(text)
                piece_tokens.append(n)
                owners.append(i)
                continue
            parts = self._cut(text, limit)
            if policy == "truncate":
                parts = parts[:1]
            logger.info(
                "Input %d has %d tokens (> %d): %s into %d piece(s)",
                i,
                n,
                limit,
                policy,
                len(parts),
            )
            for part, tokens in zip(parts, self.count_tokens(parts), strict=True):
                pieces.append(part)
                piece_tokens.append(min(limit, tokens))
                owners.append(i)
        return pieces, piece_tokens, owners

    def _request(self, texts: Sequence[str], tokens: int) -> list[list[float]]:
        """One provider call for ``texts`` (``tokens`` in all), checked and counted."""
        out = self._embed_batch(texts)
        vectors, billed = (
            (out.vectors, out.input_tokens) if isinstance(out, Embedded) else (out, None)
        )
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"{self.provider} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        self._count_usage(len(texts), billed if billed is not None else tokens)
        return vectors

    # --- identity and price ---

    def fingerprint_payload(self) -> dict[str, Any]:
        """What determines the vectors (provider, model, dimension, input handling)."""
        return {"provider": self.provider, "model": self.model, "dimension": self.dimension}

    @property
    def fingerprint(self) -> str:
        """Stable id of what produced the vectors; the embedding cache is keyed by it."""
        payload = json.dumps(self.fingerprint_payload(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def price_per_million(self, prices: dict[str, float]) -> float:
        """USD per million input tokens for this model (0 when unknown or local)."""
        return float(prices.get(self.model, 0.0))


def pack_requests(
    token_counts: Sequence[int],
    *,
    max_inputs: int,
    max_tokens: int | None = None,
    max_input_tokens: int | None = None,
) -> list[tuple[int, int]]:
    """Greedy ``[start, end)`` request slices: at most ``max_inputs`` inputs and ``max_tokens``
    tokens each (an input counts at most ``max_input_tokens``, what is sent of it).

    Greedy in order is optimal for contiguous slices: no other split of the same sequence uses
    fewer requests. (pgai's ``batch_indices``.)
    """
    max_inputs = max(1, max_inputs)
    requests: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for i, n in enumerate(token_counts):
        if max_input_tokens is not None:
            n = min(n, max_input_tokens)
        if i > start and (
            i - start >= max_inputs or (max_tokens is not None and tokens + n > max_tokens)
        ):
            requests.append((start, i))
            start, tokens = i, 0
        tokens += n
    if start < len(token_counts):
        requests.append((start, len(token_counts)))
    return requests


def combine_pieces(
    vectors: list[list[float]], tokens: Sequence[int], owners: Sequence[int], n: int
) -> list[list[float]]:
    """One vector per input from its pieces' vectors: a whole input's vector as is, a split
    input's the token-weighted mean of its pieces, re-normalised to unit length."""
    pieces = [0] * n
    for owner in owners:
        pieces[owner] += 1
    sums: list[list[float] | None] = [None] * n
    for vector, weight, owner in zip(vectors, tokens, owners, strict=True):
        if pieces[owner] == 1:
            sums[owner] = vector  # a whole input: keep its vector exactly
            continue
        acc = sums[owner]
        if acc is None:
            sums[owner] = [x * weight for x in vector]
        else:
            for j, x in enumerate(vector):
                acc[j] += x * weight
    out = []
    for acc, count in zip(sums, pieces, strict=True):
        assert acc is not None
        if count == 1:
            out.append(acc)
            continue
        norm = math.sqrt(sum(x * x for x in acc)) or 1.0
        out.append([x / norm for x in acc])
    return out


def approx_tokens(text: str) -> int:
    """A deliberately generous token estimate: one token per 3 UTF-8 bytes, at least 1.

    Used only where no tokenizer is available (see docs/indexing.md); English BPE averages
    about 4 bytes per token, so this over-counts, which keeps request packing under limits.
    """
    return max(1, -(-len(text.encode("utf-8")) // 3))
