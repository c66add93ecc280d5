"""Backfills through OpenAI's Batch API: the texts of a large run embedded at half the price.

:func:`backfill_through_batch_api` is the one call :meth:`tasks.index.run.IndexRun.apply` makes
before its window loop. It takes over every text of the plan when the run qualifies:

- the embedder is OpenAI's and the run would embed at least ``OPENAI_BATCH_MIN_TOKENS`` tokens,
  or some of its texts are already in flight in batches a killed run submitted, or a killed
  run of the same namespace left batches with texts in flight (those are always resumed,
  whatever the threshold, and their vectors cached even for texts this run no longer wants);
- texts in flight are not submitted again: their batches are polled (:mod:`tasks.index.
  batch_journal`); only texts never submitted go into new batches
  (:class:`~tasks.embedders.openai_batch.OpenAIBatchClient`), journaled as soon as each batch
  is created;
- as each batch finishes, its vectors go into the embedding cache (and out of the journal) in
  one transaction, then to ``on_result``, where the run writes them with its per-batch
  acknowledgement (ledger ``pending`` → store upsert → ``written``);
- lines the API rejected for their input (HTTP 400/413/422 in the error file) follow
  ``OPENAI_BATCH_FAILED_LINES``: ``sync-retry`` (default) sends their inputs through the
  synchronous path, which bisects a rejected request down to its poison inputs, so only those
  become dead letters; ``dead-letter`` records every input of the line as a dead letter
  (error class ``batch_http_<status>``) without another request; every run retries dead letters;
- lines with no result (the batch ``expired`` or was ``cancelled``: ``batch_expired`` lines; or
  ``failed`` as a whole, e.g. an organisation's enqueued-token limit; or a transient 429/5xx
  line) are embedded synchronously in the same run, at the synchronous price: the run ends
  complete instead of waiting another 24 h;
- inputs over the model's input limit (rare: chunks are cut to it) go the synchronous path,
  which applies ``OPENAI_OVERSIZE_POLICY``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import psycopg
from openai.types import Batch

from tasks.embedders.base import Embedder, Rejection
from tasks.embedders.openai import INPUT_REJECTION_STATUSES, OpenAIEmbedder
from tasks.embedders.openai_batch import BatchLimits, OpenAIBatchClient, group_lines
from tasks.index.batch_journal import BatchJournal
from tasks.index.embedding_cache import EmbeddingCache
from tasks.settings import Settings

logger = logging.getLogger(__name__)

#: Receives what is ready: ``({content hash: vector}, {content hash: rejection})``.
OnResult = Callable[[dict[str, list[float]], dict[str, Rejection]], None]


def backfill_through_batch_api(
    embedder: Embedder,
    conn: psycopg.Connection,
    cache: EmbeddingCache,
    settings: Settings,
    hashes: Sequence[str],
    texts: Sequence[str],
    token_counts: Sequence[int],
    on_result: OnResult,
    *,
    namespace: str,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Embed ``texts`` (content ``hashes``, ``token_counts``) through the Batch API when the run
    qualifies (see the module doc), handing results to ``on_result`` as each batch finishes;
    ``False`` (nothing done) when it does not qualify and the caller embeds synchronously.

    ``namespace`` (the logical one) owns the batches this run submits; a later run of it
    resumes every one of them that still has texts in flight.

    Returns only when every text has a vector or a rejection delivered to ``on_result``.
    """
    if not isinstance(embedder, OpenAIEmbedder) or not hashes:
        return False
    journal = BatchJournal(settings.index_state_schema)
    journal.setup(conn)
    fingerprint = embedder.fingerprint
    in_flight = journal.in_flight(conn, fingerprint, hashes)
    resumed = [f.batch_id for f in in_flight.values()]
    resumed += journal.unfinished(conn, fingerprint, namespace)
    threshold = settings.openai_batch_min_tokens
    if not resumed and (threshold is None or sum(token_counts) < threshold):
        return False
    client = OpenAIBatchClient(
        embedder,
        poll_interval_s=settings.openai_batch_poll_interval_s,
        poll_max_interval_s=settings.openai_batch_poll_max_interval_s,
        sleep=sleep,
    )
    backfill = BatchBackfill(
        embedder,
        client,
        conn,
        cache,
        journal,
        settings,
        namespace,
        hashes,
        texts,
        token_counts,
        on_result,
    )
    backfill.run(set(in_flight), resumed)
    return True


class BatchBackfill:
    """One run's texts through the Batch API: submit, poll, take results, fall back."""

    def __init__(
        self,
        embedder: OpenAIEmbedder,
        client: OpenAIBatchClient,
        conn: psycopg.Connection,
        cache: EmbeddingCache,
        journal: BatchJournal,
        settings: Settings,
        namespace: str,
        hashes: Sequence[str],
        texts: Sequence[str],
        token_counts: Sequence[int],
        on_result: OnResult,
    ) -> None:
        self.embedder = embedder
        self.client = client
        self.conn = conn
        self.cache = cache
        self.journal = journal
        self.settings = settings
        self.namespace = namespace
        self.fingerprint = embedder.fingerprint
        self.hashes = list(hashes)
        self.texts = list(texts)
        self.token_counts = list(token_counts)
        self.index = {h: i for i, h in enumerate(self.hashes)}
        self.on_result = on_result
        self.limits = BatchLimits(max_inputs=settings.openai_batch_max_inputs)

    def run(self, in_flight: set[str], resumed: Sequence[str]) -> None:
        """Submit what was never submitted, resume what is in flight, wait for all of it."""
        limit = self.embedder.max_input_tokens
        fresh = [h for h in self.hashes if h not in in_flight]
        oversize = [h for h in fresh if self.token_counts[self.index[h]] > limit]
        batch_ids = list(dict.fromkeys(resumed))
        if batch_ids:
            logger.info(
                "Resuming %d batch(es) (%d of this run's texts in flight: not submitted again)",
                len(batch_ids),
                len(in_flight),
            )
        batch_ids += self.submit([h for h in fresh if self.token_counts[self.index[h]] <= limit])
        self.embed_sync(oversize, "over the input limit")
        self.client.wait(batch_ids, self.finished)

    def submit(self, hashes: Sequence[str]) -> list[str]:
        """Pack ``hashes``' texts into request lines and batches, submit and journal each."""
        if not hashes:
            return []
        texts = [self.texts[self.index[h]] for h in hashes]
        counts = [self.token_counts[self.index[h]] for h in hashes]
        lines = self.client.lines(texts, counts)
        encoded = [self.client.encode(texts, s, e, custom_id) for custom_id, s, e in lines]
        groups = group_lines([len(b) for b in encoded], [e - s for _, s, e in lines], self.limits)
        batch_ids = []
        for a, b in groups:
            batch = self.client.submit(
                b"".join(encoded[a:b]),
                metadata={"fingerprint": self.fingerprint, "namespace": self.namespace},
            )
            # Journaled at once: a run killed from here on resumes this batch instead of paying
            # for it again (a kill between create and this commit is the one unjournaled gap).
            self.journal.record(
                self.conn,
                self.fingerprint,
                self.namespace,
                batch.id,
                batch.input_file_id,
                batch.status,
                [(custom_id, list(hashes[s:e])) for custom_id, s, e in lines[a:b]],
            )
            batch_ids.append(batch.id)
        logger.info("Submitted %d texts in %d batch(es)", len(hashes), len(batch_ids))
        return batch_ids

    def finished(self, batch: Batch) -> None:
        """Take a terminal batch's results: cache and deliver vectors, apply the policy to
        rejected lines, embed the lines without a result synchronously."""
        positions = self.journal.positions(self.conn, batch.id)
        results = self.client.results(batch) if positions else {}
        vectors: dict[str, list[float]] = {}
        rejected: dict[str, Rejection] = {}
        unfinished: list[str] = []
        for custom_id, members in positions.items():
            line = results.get(custom_id)
            if line is not None and line.vectors is not None:
                self.client.bill(line)
                for position, h in members.items():
                    if position < len(line.vectors):
                        vectors[h] = line.vectors[position]
                    else:
                        unfinished.append(h)
            elif line is not None and line.status in INPUT_REJECTION_STATUSES:
                for h in members.values():
                    rejected[h] = Rejection(f"batch_http_{line.status}", line.message)
            else:
                unfinished.extend(members.values())
        with self.conn.transaction():
            self.cache.put(self.conn, self.fingerprint, vectors)
            self.journal.forget(self.conn, self.fingerprint, list(vectors))
            self.journal.finish(self.conn, batch.id, batch.status)
        self.deliver(vectors, {})
        if batch.status != "completed":
            errors = [e.message for e in (batch.errors.data or [])] if batch.errors else []
            logger.warning(
                "Batch %s ended %s%s: %d texts without a result are embedded synchronously",
                batch.id,
                batch.status,
                f" ({'; '.join(str(e) for e in errors)})" if errors else "",
                len(unfinished),
            )
        if rejected:
            if self.settings.openai_batch_failed_lines == "dead-letter":
                self.deliver({}, rejected)
                self.journal.forget(self.conn, self.fingerprint, list(rejected))
            else:
                unfinished = list(rejected) + unfinished
        self.embed_sync(unfinished, f"no result from batch {batch.id}")

    def embed_sync(self, hashes: Sequence[str], why: str) -> None:
        """Embed ``hashes`` through the synchronous path, window by window (cache, journal,
        deliver per window); hashes this run no longer wants are only forgotten."""
        wanted = [h for h in hashes if h in self.index]
        self.journal.forget(self.conn, self.fingerprint, [h for h in hashes if h not in self.index])
        if not wanted:
            return
        logger.info("Embedding %d texts synchronously (%s)", len(wanted), why)
        texts = [self.texts[self.index[h]] for h in wanted]
        counts = [self.token_counts[self.index[h]] for h in wanted]
        for start, end in self.embedder.windows(counts):
            got, bad = self.embedder.embed_partial(texts[start:end], token_counts=counts[start:end])
            fresh = {wanted[start + i]: v for i, v in got.items()}
            rejections = {wanted[start + i]: r for i, r in bad.items()}
            with self.conn.transaction():
                self.cache.put(self.conn, self.fingerprint, fresh)
                self.journal.forget(self.conn, self.fingerprint, [*fresh, *rejections])
            self.deliver(fresh, rejections)

    def deliver(self, vectors: dict[str, list[float]], rejections: dict[str, Rejection]) -> None:
        """Hand what this run wants to ``on_result`` (a resumed batch may carry texts of an
        earlier plan: they stay in the cache for a later run)."""
        vectors = {h: v for h, v in vectors.items() if h in self.index}
        rejections = {h: r for h, r in rejections.items() if h in self.index}
        if vectors or rejections:
            self.on_result(vectors, rejections)
