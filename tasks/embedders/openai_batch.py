"""OpenAI's Batch API for embeddings: half the price of ``POST /embeddings``, results within 24 h.

This module is the API client and the file format; which runs use it, the journal of submitted
batches and what happens to their results are :mod:`tasks.index.batch_backfill`'s.

- **Input files.** One JSONL line per embeddings request (``{"custom_id", "method": "POST",
  "url": "/v1/embeddings", "body": {...}}``), packed exactly as the synchronous path packs them
  (:meth:`~tasks.embedders.base.Embedder.pack`: at most 2048 inputs and 300k tokens per
  request). Lines are grouped into files (:func:`group_lines`) within the documented limits:
  at most 50,000 requests and 200 MB per file, and at most 50,000 embedding inputs per batch.
  A file is uploaded with ``files.create(purpose="batch")`` and run with ``batches.create(
  endpoint="/v1/embeddings", completion_window="24h")``.
- **Statuses.** ``validating → in_progress → finalizing → completed``, or ``failed`` (the file
  did not validate, or an organisation limit such as enqueued tokens was hit), ``expired`` (not
  done within the window: the lines done so far are in the output file, the others in the error
  file as ``batch_expired``), ``cancelling → cancelled``. :meth:`OpenAIBatchClient.wait` polls
  until each batch is terminal, waiting ``OPENAI_BATCH_POLL_INTERVAL_S`` first and doubling up to
  ``OPENAI_BATCH_POLL_MAX_INTERVAL_S`` (tenacity's exponential wait).
- **Results.** The output file holds a line per successful request (``response.status_code``
  200, ``response.body`` an embeddings response), the error file a line per failed one (a
  4xx/5xx ``response``, or an ``error`` object and no response); order is not the input's, so
  lines are matched by ``custom_id`` (:func:`parse_results`).
- **Retries.** Each API call (upload, create, retrieve, download) goes through the one retry
  layer of :mod:`tasks.retry` with the embedder's attempts and waits, on the embedder's own
  client (SDK retries off), so nothing multiplies.
- **Usage.** Tokens of successful lines count in the embedder's usage as batch tokens
  (:attr:`~tasks.embedders.base.Usage.batch_input_tokens`), priced at
  ``OPENAI_BATCH_PRICE_FACTOR`` of the synchronous price.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai
import tenacity
from openai.types import Batch

from tasks.embedders.openai import KNOWN_DIMENSIONS, OpenAIEmbedder
from tasks.errors import EmbeddingError
from tasks.retry import give_up, retrying

logger = logging.getLogger(__name__)

#: The endpoint every line of an embeddings batch calls.
ENDPOINT: Literal["/v1/embeddings"] = "/v1/embeddings"
#: The only completion window the API offers.
COMPLETION_WINDOW: Literal["24h"] = "24h"
#: Documented limits of one batch input file ...
MAX_REQUESTS_PER_FILE = 50_000
#: ... (200 MB; counted as 10**6 bytes per MB, the smaller reading) ...
MAX_BYTES_PER_FILE = 200_000_000
#: ... and of the embedding inputs across all requests of one ``/v1/embeddings`` batch.
MAX_INPUTS_PER_BATCH = 50_000
#: Statuses after which a batch changes no more.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold (the documented limits by default; tests pass smaller ones)."""

    max_requests: int = MAX_REQUESTS_PER_FILE
    max_bytes: int = MAX_BYTES_PER_FILE
    max_inputs: int = MAX_INPUTS_PER_BATCH


@dataclass(frozen=True)
class LineResult:
    """The outcome of one request line of a finished batch."""

    custom_id: str
    #: Vectors in input order, or ``None`` when the line failed.
    vectors: list[list[float]] | None
    #: Tokens the line was billed for (0 for a failed line).
    tokens: int = 0
    #: HTTP status of a failed line's response (``None``: no response, e.g. ``batch_expired``).
    status: int | None = None
    #: The error's code (``batch_expired``, ``invalid_request_error``, ...) and message.
    code: str | None = None
    message: str = ""


def request_line(
    custom_id: str, model: str, texts: Sequence[str], dimensions: int | None = None
) -> bytes:
    """One JSONL line (with its newline): an embeddings request of ``texts``."""
    body: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
    if dimensions:
        body["dimensions"] = dimensions
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def group_lines(
    line_bytes: Sequence[int], line_inputs: Sequence[int], limits: BatchLimits = BatchLimits()
) -> list[tuple[int, int]]:
    """Greedy contiguous ``[start, end)`` slices of request lines, one per batch: each within
    ``limits`` (requests, bytes and embedding inputs per batch).

    Raises:
        ValueError: one line alone is over a limit (a packing bug: requests hold ≤ 2048 inputs).
    """
    files: list[tuple[int, int]] = []
    start, size, inputs = 0, 0, 0
    for i, (n_bytes, n_inputs) in enumerate(zip(line_bytes, line_inputs, strict=True)):
        if n_bytes > limits.max_bytes or n_inputs > limits.max_inputs:
            raise ValueError(
                f"Batch request line {i} ({n_bytes} bytes, {n_inputs} inputs) is over the "
                f"per-batch limits ({limits.max_bytes} bytes, {limits.max_inputs} inputs)"
            )
        if i > start and (
            i - start >= limits.max_requests
            or size + n_bytes > limits.max_bytes
            or inputs + n_inputs > limits.max_inputs
        ):
            files.append((start, i))
            start, size, inputs = i, 0, 0
        size += n_bytes
        inputs += n_inputs
    if start < len(line_bytes):
        files.append((start, len(line_bytes)))
    return files


def parse_results(text: str) -> dict[str, LineResult]:
    """The lines of an output or error file, by ``custom_id``.

    Raises:
        EmbeddingError: a line is not JSON or has no ``custom_id`` (not a batch result file).
    """
    out: dict[str, LineResult] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id = str(line["custom_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"Line {number} of a batch result file is not a batch result ({exc}): the "
                "file is damaged or not from the Batch API; re-run to download it again."
            ) from None
        response = line.get("response") or {}
        error = line.get("error") or {}
        status = response.get("status_code")
        body = response.get("body") or {}
        if status == 200 and isinstance(body.get("data"), list):
            data = sorted(body["data"], key=lambda d: d["index"])
            usage = body.get("usage") or {}
            out[custom_id] = LineResult(
                custom_id,
                [list(map(float, d["embedding"])) for d in data],
                int(usage.get("prompt_tokens") or 0),
            )
            continue
        body_error = body.get("error") if isinstance(body, dict) else None
        detail = body_error if isinstance(body_error, dict) else error
        out[custom_id] = LineResult(
            custom_id,
            None,
            status=int(status) if isinstance(status, int) else None,
            code=str(detail.get("code") or detail.get("type") or "") or None,
            message=str(detail.get("message") or f"batch line failed (status {status})"),
        )
    return out


class OpenAIBatchClient:
    """Uploads batch files, creates, polls and cancels batches, downloads their results, on an
    :class:`~tasks.embedders.openai.OpenAIEmbedder`'s client and retry settings."""

    def __init__(
        self,
        embedder: OpenAIEmbedder,
        *,
        poll_interval_s: float = 30.0,
        poll_max_interval_s: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.embedder = embedder
        # The embedder's client: its SDK retries are off, our retry layer is the only one.
        self._client = embedder._client
        self.poll_interval_s = poll_interval_s
        self.poll_max_interval_s = poll_max_interval_s
        self._sleep = sleep

    # --- files and lines ---

    def lines(
        self, texts: Sequence[str], token_counts: Sequence[int]
    ) -> list[tuple[str, int, int]]:
        """``(custom_id, start, end)`` per request of ``texts``, packed like the sync path."""
        return [
            (f"r{k}", start, end) for k, (start, end) in enumerate(self.embedder.pack(token_counts))
        ]

    def encode(self, texts: Sequence[str], start: int, end: int, custom_id: str) -> bytes:
        """The JSONL line of one request."""
        return request_line(
            custom_id, self.embedder.model, texts[start:end], self.embedder.config.dimensions
        )

    # --- API calls ---

    def submit(self, jsonl: bytes, metadata: dict[str, str] | None = None) -> Batch:
        """Upload ``jsonl`` (``purpose="batch"``) and create its embeddings batch."""
        upload = self._call(
            "Batch file upload",
            lambda: self._client.files.create(
                file=("embeddings.jsonl", io.BytesIO(jsonl), "application/jsonl"), purpose="batch"
            ),
        )
        batch = self._call(
            "Batch create",
            lambda: self._client.batches.create(
                input_file_id=upload.id,
                endpoint=ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata=metadata or None,
            ),
        )
        logger.info("Submitted batch %s (file %s, %d bytes)", batch.id, upload.id, len(jsonl))
        return batch

    def retrieve(self, batch_id: str) -> Batch:
        """The batch as the API sees it now."""
        return self._call("Batch status", lambda: self._client.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch (it goes ``cancelling``, then ``cancelled``)."""
        return self._call("Batch cancel", lambda: self._client.batches.cancel(batch_id))

    def download(self, file_id: str) -> str:
        """The text of an output or error file."""
        return self._call("Batch result download", lambda: self._client.files.content(file_id).text)

    def results(self, batch: Batch) -> dict[str, LineResult]:
        """Every line of a finished batch's output and error files, by ``custom_id``.

        Raises:
            EmbeddingError: a line's vectors are not of the embedder's dimension.
        """
        out: dict[str, LineResult] = {}
        for file_id in (batch.error_file_id, batch.output_file_id):  # output wins on a clash
            if file_id:
                out.update(parse_results(self.download(file_id)))
        expected = self.embedder.config.dimensions or KNOWN_DIMENSIONS.get(self.embedder.model)
        for line in out.values():
            if line.vectors and expected and any(len(v) != expected for v in line.vectors):
                raise EmbeddingError(
                    f"Batch {batch.id} line {line.custom_id} holds vectors of the wrong length "
                    f"(expected {expected}): check EMBEDDING_MODEL and EMBEDDING_DIMENSIONS."
                )
        return out

    def bill(self, line: LineResult) -> None:
        """Count a successful line taken into use in the embedder's usage, as batch tokens
        (a line taken again after a resume is not counted twice: the caller bills what it
        takes)."""
        if line.vectors is not None:
            self.embedder._count_usage(len(line.vectors), line.tokens, batch=True)

    def wait(self, batch_ids: Sequence[str], on_finished: Callable[[Batch], None]) -> None:
        """Poll ``batch_ids`` until each is terminal, calling ``on_finished`` for each as soon as
        it is; waits between rounds grow exponentially (tenacity) up to the maximum."""
        waiting = list(dict.fromkeys(batch_ids))

        def poll_round() -> list[str]:
            still: list[str] = []
            for batch_id in waiting:
                batch = self.retrieve(batch_id)
                if batch.status in TERMINAL_STATUSES:
                    on_finished(batch)
                else:
                    still.append(batch_id)
            waiting[:] = still
            if still:
                logger.info("%d batch(es) still running", len(still))
            return still

        poller = tenacity.Retrying(
            retry=tenacity.retry_if_result(bool),
            wait=tenacity.wait_exponential(
                multiplier=self.poll_interval_s, max=self.poll_max_interval_s
            ),
            stop=tenacity.stop_never,
            sleep=self._sleep,
            reraise=True,
        )
        poller(poll_round)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` under the retry layer; final errors as :class:`EmbeddingError`."""
        options = self.embedder.options
        policy = retrying(
            f"{what} at {self._client.base_url}",
            attempts=options.max_attempts,
            base_s=options.backoff_base_s,
            max_wait_s=options.max_retry_wait_s,
            sleep=self.embedder._sleep,
            log=logger,
        )
        try:
            return policy(call)
        except openai.AuthenticationError:
            raise give_up(
                EmbeddingError("OpenAI rejected the API key (401): check OPENAI_API_KEY.")
            ) from None
        except openai.APIStatusError as exc:
            raise give_up(
                EmbeddingError(
                    f"{what} at {self._client.base_url} failed with HTTP {exc.status_code}: "
                    f"{exc.message}. Batches already submitted are in the journal; re-run to "
                    "resume them."
                )
            ) from None
        except openai.APIConnectionError as exc:
            raise give_up(
                EmbeddingError(
                    f"{what} at {self._client.base_url} failed {options.max_attempts} times: "
                    f"{exc}. Check OPENAI_BASE_URL and the network, then re-run (submitted "
                    "batches are resumed, not paid for again)."
                )
            ) from None
