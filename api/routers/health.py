"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness); no API key needed."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import ServiceDep, SettingsDep
from api.schemas import HealthOut, ReadyOut
from api.timeouts import DeadlineExceeded, with_deadline

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
async def healthz() -> HealthOut:
    """The process is up and serving requests."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready; `checks` says why."}},
    summary="Readiness",
)
async def readyz(service: ServiceDep, settings: SettingsDep, response: Response) -> ReadyOut:
    """Database reachable, embedder loaded, store reachable and every namespace non-empty."""
    try:
        checks = await with_deadline(settings.search_timeout_s, service.readiness)
    except DeadlineExceeded:
        checks = {"readiness": "checks timed out"}
    ready = bool(checks) and all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyOut(status="ready" if ready else "not ready", checks=checks)
