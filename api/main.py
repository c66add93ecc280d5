"""Build the search service: ``create_app(settings)``.

Serve it with ``semantic-index serve``; see docs/search-service.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import ServiceMetrics
from api.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    CatchAllMiddleware,
    MetricsMiddleware,
)
from api.routers import documents, health, metrics, search
from api.security import configured_keys
from api.service import SearchService, ServiceBusy
from api.timeouts import DeadlineExceeded
from tasks.errors import (
    ConfigError,
    EmbedderUnavailable,
    EmbeddingError,
    PipelineError,
    WarehouseError,
)
from tasks.search.query_batching import QueryTimeout
from tasks.search.searcher import SearchRequestError
from tasks.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: the environment's).

    Raises:
        ConfigError: authentication is on and no API key is configured.
    """
    settings = settings or get_settings()
    keys = configured_keys(settings)
    service = SearchService(settings)
    app_metrics = ServiceMetrics(settings, service.pool_stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()  # the query embedder loads once per process, before the first request
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="Semantic search",
        version="1.0.0",
        summary="Search the semantic index built by the pipeline: text in, ranked chunks out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.service = service
    app.state.metrics = app_metrics
    if settings.search_api_auth_disabled:
        logger.warning("API-key authentication is DISABLED (SEARCH_API_AUTH_DISABLED=true).")

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    _add_error_handlers(app)

    # Added last = outermost. Order of a request: access log -> metrics -> size limit -> CORS
    # -> errors (so metrics count the 413s and 500s those answer).
    app.add_middleware(CatchAllMiddleware)
    origins = [o.strip() for o in settings.search_api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            expose_headers=["X-Request-ID", "Server-Timing"],
            max_age=600,
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.search_api_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    app.add_middleware(AccessLogMiddleware)
    return app


def _request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


def _error(request: Request, code: int, detail: object, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "request_id": _request_id(request)}, status_code=code, headers=headers
    )


def _add_error_handlers(app: FastAPI) -> None:
    """Map domain errors to HTTP statuses; messages are ours (no traces, no secrets)."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the `input` echo: it can be large and may hold what the client sent in error.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return _error(request, status.HTTP_422_UNPROCESSABLE_CONTENT, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request, exc.status_code, exc.detail, **(exc.headers or {}))

    @app.exception_handler(PipelineError)
    async def domain_error(request: Request, exc: PipelineError) -> JSONResponse:
        if isinstance(exc, SearchRequestError):
            return _error(request, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
        if isinstance(exc, DeadlineExceeded | QueryTimeout):
            return _error(request, status.HTTP_504_GATEWAY_TIMEOUT, str(exc))
        if isinstance(exc, ServiceBusy):
            return _error(
                request, status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), **{"Retry-After": "1"}
            )
        logger.error("Request %s failed: %s: %s", _request_id(request), type(exc).__name__, exc)
        if isinstance(exc, WarehouseError):
            detail = "The database is unavailable; retry later."
        elif isinstance(exc, EmbedderUnavailable | EmbeddingError):
            detail = "The embedding model is unavailable; retry later."
        elif isinstance(exc, ConfigError):
            detail = "The service is not configured for this request; see the service log."
        else:
            detail = "The search failed; see the service log."
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, detail)

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def statement_timeout(request: Request, exc: Exception) -> JSONResponse:
        return _error(
            request, status.HTTP_504_GATEWAY_TIMEOUT, "The database did not answer in time."
        )

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("Request %s: database error %s", _request_id(request), type(exc).__name__)
        return _error(
            request,
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The database is unavailable; retry later.",
        )
