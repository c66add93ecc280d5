"""``POST /search``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import Authenticated, ServiceDep, SettingsDep
from api.schemas import (
    DocumentResultOut,
    ErrorOut,
    SearchRequest,
    SearchResponseOut,
    SearchResultOut,
)
from api.timeouts import with_deadline
from tasks.search.searcher import Searcher, SearchResponse

router = APIRouter(tags=["search"], dependencies=[Authenticated])


@router.post(
    "/search",
    response_model=SearchResponseOut,
    responses={
        401: {"model": ErrorOut, "description": "Missing or invalid API key."},
        413: {"model": ErrorOut, "description": "Request body too large."},
        422: {"model": ErrorOut, "description": "Invalid query, filter, namespace or top_k."},
        503: {"model": ErrorOut, "description": "Busy: no database connection free in time."},
        504: {"model": ErrorOut, "description": "The search took longer than SEARCH_TIMEOUT_S."},
    },
    summary="Search the index",
)
async def search(
    body: SearchRequest,
    service: ServiceDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> SearchResponseOut:
    """Embed the query, retrieve (vector or hybrid) and return ranked documents with their best
    passages (`group_by: document`, the default) or ranked chunks (`group_by: chunk`).

    `Server-Timing` reports `embed` (query embedding) and `retrieve` (database) durations.
    """

    def run(searcher: Searcher) -> SearchResponse:
        return searcher.search(
            body.query,
            body.top_k,
            body.filter,
            body.namespace,
            body.mode,
            body.offset,
            group_by=body.group_by,
            group_rule=body.group_rule,
        )

    result = await with_deadline(settings.search_timeout_s, service.run, run)
    request.app.state.metrics.observe_search(result.mode, result.embed_ms, result.retrieve_ms)
    response.headers["Server-Timing"] = (
        f"embed;dur={result.embed_ms:.2f}, retrieve;dur={result.retrieve_ms:.2f}"
    )
    results: list[DocumentResultOut] | list[SearchResultOut]
    if body.group_by == "document":
        results = [DocumentResultOut(**d.to_dict()) for d in result.documents]
    else:
        results = [SearchResultOut(**r.to_dict()) for r in result.results]
    return SearchResponseOut(
        results=results,
        group_by=body.group_by,
        group_rule=result.group_rule,
        took_ms=round(result.total_ms, 2),
        model=result.model,
        mode=result.mode,
        namespace=result.namespace,
    )
