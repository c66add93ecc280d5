"""API-key authentication: keys from SEARCH_API_KEYS, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tasks.errors import ConfigError
from tasks.settings import Settings

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="One of the keys in SEARCH_API_KEYS."
)
bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`.")


def configured_keys(settings: Settings) -> list[bytes]:
    """The accepted keys.

    Raises:
        ConfigError: authentication is on but no key is configured.
    """
    raw = settings.search_api_keys.get_secret_value() if settings.search_api_keys else ""
    keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    if not keys and not settings.search_api_auth_disabled:
        raise ConfigError(
            "The search service needs API keys: set SEARCH_API_KEYS (comma-separated), or "
            "SEARCH_API_AUTH_DISABLED=true for local use only."
        )
    return keys


def key_matches(presented: str, keys: list[bytes]) -> bool:
    """Whether ``presented`` is one of ``keys``; every key is compared, each in constant time."""
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def require_api_key(
    request: Request,
    header_key: Annotated[str | None, Security(api_key_header)],
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """Dependency: reject the request (401) unless it carries a valid key or auth is disabled."""
    state = request.app.state
    if state.settings.search_api_auth_disabled:
        return
    presented = header_key or (bearer_key.credentials if bearer_key else None)
    if not presented or not key_matches(presented, state.api_keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Missing or invalid API key: send it as `X-API-Key: <key>` or "
            "`Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
