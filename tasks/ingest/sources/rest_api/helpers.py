"""Turning a ``rest_api`` entry of the sources file into dlt's ``RESTAPIConfig``."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.sources.helpers.rest_client.auth import (
    APIKeyAuth,
    AuthConfigBase,
    BearerTokenAuth,
    HttpBasicAuth,
    OAuth2ClientCredentials,
)
from pydantic import BaseModel

from tasks.errors import ConfigError
from tasks.ingest.sources.config import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    EndpointConfig,
    OAuth2ClientCredentialsAuth,
    RestApiSourceConfig,
    RestResource,
)
from tasks.ingest.sources.contracts import mark_rejected, split_rows
from tasks.ingest.sources.http import SafeSession
from tasks.ingest.sources.redaction import register_secret


def secret(source: str, field: str, required: bool = True) -> str | None:
    """``SOURCES__<SOURCE>__<FIELD>`` (env) or ``[sources.<source>] <field>`` (secrets.toml).

    The value is registered with :func:`tasks.ingest.sources.redaction.register_secret`.

    Raises:
        ConfigError: the secret is required and not set; the message names the variable.
    """
    value: Any
    try:
        value = dlt.secrets.get(f"sources.{source}.{field}")
    except ConfigFieldMissingException:
        value = None
    if value in (None, "") and required:
        raise ConfigError(
            f"Source {source}: secret `{field}` is not set. Set the environment variable "
            f"SOURCES__{source.upper()}__{field.upper()} or add `{field}` under "
            f"[sources.{source}] in .dlt/secrets.toml."
        )
    if value is None:
        return None
    register_secret(str(value))  # masked in every message and log from now on
    return str(value)


def basic_credentials(username: str | None, password: str | None) -> str:
    """The base64 token of an ``Authorization: Basic`` header for these credentials."""
    return base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode()


def build_auth(config: RestApiSourceConfig, session: SafeSession) -> AuthConfigBase | None:
    """dlt's auth object for the declared auth type, secrets read from env/dlt secrets."""
    auth = config.client.auth
    name = config.name
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        return BearerTokenAuth(token=secret(name, "token"))  # type: ignore[arg-type]
    if isinstance(auth, ApiKeyAuth):
        return APIKeyAuth(
            name=auth.name,
            api_key=secret(name, "api_key"),  # type: ignore[arg-type]
            location=auth.location,
        )
    if isinstance(auth, BasicAuth):
        username = auth.username or secret(name, "username")
        password = secret(name, "password")
        register_secret(basic_credentials(username, password))  # the header's value, if echoed
        return HttpBasicAuth(username=username, password=password)  # type: ignore[arg-type]
    if isinstance(auth, OAuth2ClientCredentialsAuth):
        client_id, client_secret = secret(name, "client_id"), secret(name, "client_secret")
        register_secret(basic_credentials(client_id, client_secret))
        return OAuth2ClientCredentials(
            access_token_url=auth.access_token_url,  # type: ignore[arg-type]
            client_id=client_id,  # type: ignore[arg-type]
            client_secret=client_secret,  # type: ignore[arg-type]
            access_token_request_data=auth.access_token_request_data,
            default_token_expiration=auth.default_token_expiration,
            session=session,
        )
    raise ConfigError(f"Source {name}: unsupported auth {auth!r}")  # pragma: no cover


def paginator_dict(paginator: BaseModel) -> dict[str, Any]:
    """dlt's paginator config; ``None`` is kept (``total_path: null`` means "no total")."""
    return paginator.model_dump()


def endpoint_dict(endpoint: str | EndpointConfig) -> str | dict[str, Any]:
    """dlt's ``Endpoint`` mapping (the YAML is already in its shape)."""
    if isinstance(endpoint, str):
        return endpoint
    data = endpoint.model_dump(exclude_none=True, by_alias=True)
    if endpoint.paginator is not None:
        data["paginator"] = paginator_dict(endpoint.paginator)
    if not data.get("headers"):
        data.pop("headers", None)
    incremental = data.get("incremental")
    if incremental is not None and incremental.get("on_cursor_value_missing") == "raise":
        incremental.pop("on_cursor_value_missing")
    return data


def resource_dict(resource: RestResource) -> dict[str, Any]:
    """dlt's ``EndpointResource`` mapping for one declared resource."""
    data: dict[str, Any] = {
        "name": resource.name,
        "endpoint": endpoint_dict(resource.endpoint),
        "write_disposition": resource.write_disposition,
        "selected": resource.selected,
    }
    if resource.primary_key:
        data["primary_key"] = resource.primary_key
    if resource.columns:
        data["columns"] = {c: {"data_type": t} for c, t in resource.columns.items()}
    if resource.include_from_parent:
        data["include_from_parent"] = resource.include_from_parent
    if resource.max_table_nesting is not None:
        data["max_table_nesting"] = resource.max_table_nesting
    return data


def rest_api_config(config: RestApiSourceConfig, session: SafeSession) -> dict[str, Any]:
    """The whole ``RESTAPIConfig`` for ``config``, with our session (retries) and auth."""
    client: dict[str, Any] = {"base_url": config.client.base_url, "session": session}
    if config.client.headers:
        client["headers"] = dict(config.client.headers)
    if config.client.paginator is not None:
        client["paginator"] = paginator_dict(config.client.paginator)
    auth = build_auth(config, session)
    if auth is not None:
        client["auth"] = auth
    return {"client": client, "resources": [resource_dict(r) for r in config.resources]}


def contract_step(table: str, columns: Mapping[str, str], mode: Any) -> Any:
    """A pipe step over whole pages: a clean page passes unchanged (children still get pages);
    otherwise a generator yields the good rows and the rejected rows marked for
    ``<table>__rejected`` (only a yielded item may carry table hints)."""

    def check(page: Any, meta: Any = None) -> Any:
        rows = page if isinstance(page, list) else [page]
        good, rejected = split_rows(rows, columns, mode, table, origin=None)
        if not rejected:
            return page

        def split() -> Iterator[Any]:
            if good:
                yield good
            yield mark_rejected(rejected, table)

        return split()

    return check
