"""``GET /metrics``: Prometheus text format, behind the API key like the data endpoints.

Prometheus sends the key itself (``authorization: {credentials_file: ...}`` in the scrape
config): the metrics name namespaces and show traffic and pool sizes, which is nothing for
anonymous callers. See docs/search-service.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import Authenticated
from api.schemas import ErrorOut

router = APIRouter(tags=["metrics"], dependencies=[Authenticated])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        401: {"model": ErrorOut, "description": "Missing or invalid API key."},
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies, embed/retrieve histograms, pool saturation, index freshness."""
    # The freshness collector queries the ledger: off the event loop.
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
