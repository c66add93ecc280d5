"""Pure ASGI middleware: request ids, structured access logs, request body size limit, metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import traceback
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ServiceMetrics

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("api.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when a streamed body passes the limit.

    An ``HTTPException`` because FastAPI turns any other error raised while it reads the body
    into a 400; this one reaches the app's handler and becomes the 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large(max_bytes))


class ResponseTracker:
    """A ``send`` wrapper that records whether the response has started (headers sent), so
    error handlers know whether they may still answer."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def send_json(
    send: Send, status: int, payload: dict[str, object], close: bool = False
) -> None:
    """Send a complete JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(max_bytes: int) -> str:
    return f"Request body larger than {max_bytes} bytes (SEARCH_API_MAX_BODY_BYTES)."


class BodySizeLimitMiddleware:
    """Answer 413 to bodies larger than ``max_bytes`` (by Content-Length, or while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server rejects a malformed length itself
            if too_large:
                await self._reject(send)
                return
        received = 0
        tracker = ResponseTracker(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, tracker)
        except BodyTooLarge:
            if not tracker.started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_json(send, 413, {"detail": _too_large(self.max_bytes)}, close=True)


class AccessLogMiddleware:
    """One JSON line per request on the ``api.access`` logger; sets ``X-Request-ID``.

    Logs method, path (never the query string or body: queries may hold personal data), status,
    duration and request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        timing: dict[str, Any] = {}

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
                timing.update(_server_timing(headers))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record: dict[str, Any] = {
                "event": "http_request",
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
                **timing,
            }
            access_logger.info(json.dumps(record))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _server_timing(headers: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """``embed_ms``/``retrieve_ms`` from our own Server-Timing header, for the access log."""
    out: dict[str, float] = {}
    for key, value in headers:
        if key.lower() != b"server-timing":
            continue
        for part in value.decode("latin-1").split(","):
            name, _, rest = part.strip().partition(";dur=")
            if rest:
                with contextlib.suppress(ValueError):
                    out[f"{name}_ms"] = float(rest)
    return out


class JsonFormatter(logging.Formatter):
    """Log records as JSON objects (access lines are JSON already and pass through)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == access_logger.name:
            return message
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        return json.dumps(payload)


def _where_raised(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: enough to find the bug, no data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


class CatchAllMiddleware:
    """Turn any unexpected exception into a bare 500 with the request id.

    Logs the exception type and where it was raised only: tracebacks and messages of unknown
    errors may carry data or secrets. (Starlette's own handler for ``Exception`` re-raises,
    and the server then prints the traceback; this middleware stops it here.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracker = ResponseTracker(send)
        try:
            await self.app(scope, receive, tracker)
        except Exception as exc:
            if isinstance(exc, BodyTooLarge):
                raise  # the size-limit middleware outside answers 413
            request_id = scope.get("state", {}).get("request_id")
            logger.error(
                "Request %s failed: unexpected %s at %s",
                request_id,
                type(exc).__name__,
                _where_raised(exc),
            )
            if not tracker.started:
                await send_json(send, 500, {"detail": "Internal error.", "request_id": request_id})


class MetricsMiddleware:
    """Count every request and time it, labelled by route template (``/documents/{document_id}``,
    never the raw path: ids would make one time series per document). Paths no route matched
    count as ``unmatched``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(
                scope.get("method", ""),
                getattr(route, "path", "unmatched"),
                status,
                time.perf_counter() - started,
            )
