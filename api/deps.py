"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.security import require_api_key
from api.service import SearchService
from tasks.settings import Settings


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> SearchService:
    """The process-wide search service (embedder + connection pool)."""
    service: SearchService = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServiceDep = Annotated[SearchService, Depends(get_service)]
#: Add to a router's ``dependencies`` to require an API key.
Authenticated = Depends(require_api_key)
