"""``GET /documents/{document_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import Authenticated, ServiceDep, SettingsDep
from api.schemas import ChunkOut, DocumentOut, ErrorOut
from api.timeouts import with_deadline
from tasks.search.searcher import DocumentView, Searcher

router = APIRouter(tags=["documents"], dependencies=[Authenticated])


@router.get(
    "/documents/{document_id}",
    response_model=DocumentOut,
    responses={
        401: {"model": ErrorOut, "description": "Missing or invalid API key."},
        404: {"model": ErrorOut, "description": "No such document in the index."},
        422: {"model": ErrorOut, "description": "Unknown namespace."},
    },
    summary="A document and its chunks",
)
async def get_document(
    document_id: Annotated[str, Path(min_length=1, max_length=512)],
    service: ServiceDep,
    settings: SettingsDep,
    namespace: Annotated[
        str | None, Query(pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Default: the only one.")
    ] = None,
) -> DocumentOut:
    """The indexed document with its chunks in order (e.g. `item:42` in the demo)."""

    def run(searcher: Searcher) -> DocumentView | None:
        return searcher.document(document_id, namespace)

    doc = await with_deadline(settings.search_timeout_s, service.run, run)
    if doc is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"No document {document_id!r} in namespace {namespace or 'default'}.",
        )
    return DocumentOut(
        document_id=doc.document_id,
        namespace=doc.namespace,
        title=doc.title,
        url=doc.url,
        metadata=doc.metadata,
        chunks=[ChunkOut(**c) for c in doc.chunks],
    )
