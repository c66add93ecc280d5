"""Turning a ``rest_api`` entry of the sources file into dlt's ``RESTAPIConfig``."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any, cast

import dlt
from dlt.common.configuration import known_sections, with_config
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.typing import TSecretStrValue
from dlt.sources.helpers.rest_client.auth import (
    APIKeyAuth,
    AuthConfigBase,
    BearerTokenAuth,
    HttpBasicAuth,
    OAuth2ClientCredentials,
    TApiKeyLocation,
)
from dlt.sources.rest_api.typing import (
    ClientConfig,
    Endpoint,
    EndpointResource,
    RESTAPIConfig,
)
from dlt.sources.rest_api.typing import PaginatorConfig as DltPaginatorConfig

from tasks.errors import ConfigError
from tasks.ingest.sources.config import (
    PAGINATOR_DEFAULTS,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    EndpointConfig,
    OAuth2ClientCredentialsAuth,
    PaginatorConfig,
    RestApiSourceConfig,
    RestResource,
)
from tasks.ingest.sources.contracts import mark_rejected, split_rows
from tasks.ingest.sources.http import SafeSession
from tasks.ingest.sources.redaction import register_secret


def _checked(source_name: str, field: str, value: str) -> str:
    """``value`` registered for redaction; an empty value is refused like a missing one."""
    if not value:
        raise ConfigError(_missing_message(source_name, [field]))
    register_secret(value)  # masked in every message and log from now on
    return value


def _missing_message(source_name: str, fields: list[str]) -> str:
    where = " and ".join(f"SOURCES__{source_name.upper()}__{f.upper()}" for f in fields)
    names = ", ".join(f"`{f}`" for f in fields)
    return (
        f"Source {source_name}: secret {names} is not set. Set the environment variable "
        f"{where} or add {names} under [sources.{source_name}] in .dlt/secrets.toml."
    )


# Each auth type's secrets are injected by dlt (``dlt.secrets.value``) from the section
# ``sources.<source_name>``: environment variables SOURCES__<NAME>__<FIELD>, .dlt/secrets.toml
# [sources.<name>], or any other dlt config provider. Arguments without a default are the
# options from the sources file, never looked up.


@with_config(sections=(known_sections.SOURCES,), section_arg_name="source_name")
def bearer_auth(source_name: str, token: TSecretStrValue = dlt.secrets.value) -> BearerTokenAuth:
    """``Authorization: Bearer <token>``."""
    return BearerTokenAuth(token=_checked(source_name, "token", token))


@with_config(sections=(known_sections.SOURCES,), section_arg_name="source_name")
def api_key_auth(
    source_name: str,
    name: str,
    location: TApiKeyLocation,
    api_key: TSecretStrValue = dlt.secrets.value,
) -> APIKeyAuth:
    """The API key in the header or query parameter ``name``."""
    return APIKeyAuth(
        name=name, api_key=_checked(source_name, "api_key", api_key), location=location
    )


@with_config(sections=(known_sections.SOURCES,), section_arg_name="source_name")
def http_basic_auth(
    source_name: str,
    username: str = dlt.secrets.value,
    password: TSecretStrValue = dlt.secrets.value,
) -> HttpBasicAuth:
    """HTTP basic auth; ``username`` from the sources file when it is there."""
    password = _checked(source_name, "password", password)
    register_secret(basic_credentials(username, password))  # the header's value, if echoed
    return HttpBasicAuth(username=username, password=password)


@with_config(sections=(known_sections.SOURCES,), section_arg_name="source_name")
def oauth2_client_credentials_auth(
    source_name: str,
    access_token_url: str,
    access_token_request_data: dict[str, Any],
    default_token_expiration: int,
    session: SafeSession,
    client_id: TSecretStrValue = dlt.secrets.value,
    client_secret: TSecretStrValue = dlt.secrets.value,
) -> OAuth2ClientCredentials:
    """OAuth2 client credentials, the token requested through our session (retries)."""
    client_id = _checked(source_name, "client_id", client_id)
    client_secret = _checked(source_name, "client_secret", client_secret)
    register_secret(basic_credentials(client_id, client_secret))
    return OAuth2ClientCredentials(
        access_token_url=access_token_url,
        client_id=client_id,
        client_secret=client_secret,
        access_token_request_data=access_token_request_data,
        default_token_expiration=default_token_expiration,
        session=session,
    )


def basic_credentials(username: str | None, password: str | None) -> str:
    """The base64 token of an ``Authorization: Basic`` header for these credentials."""
    return base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode()


def build_auth(config: RestApiSourceConfig, session: SafeSession) -> AuthConfigBase | None:
    """dlt's auth object for the declared auth type, its secrets injected by dlt.

    Raises:
        ConfigError: a secret is not set; the message names the variables to set.
    """
    auth = config.client.auth
    name = config.name
    try:
        if auth is None:
            return None
        if isinstance(auth, BearerAuth):
            return bearer_auth(name)
        if isinstance(auth, ApiKeyAuth):
            return api_key_auth(name, auth.name, auth.location)
        if isinstance(auth, BasicAuth):
            if auth.username:
                return http_basic_auth(name, username=auth.username)
            return http_basic_auth(name)
        if isinstance(auth, OAuth2ClientCredentialsAuth):
            return oauth2_client_credentials_auth(
                name,
                auth.access_token_url,
                auth.access_token_request_data,
                auth.default_token_expiration,
                session,
            )
    except ConfigFieldMissingException as exc:
        raise ConfigError(_missing_message(name, list(exc.fields))) from None
    raise ConfigError(f"Source {name}: unsupported auth {auth!r}")  # pragma: no cover


def dlt_paginator(paginator: PaginatorConfig) -> DltPaginatorConfig:
    """The declared paginator with our defaults where they differ from dlt's
    (:data:`tasks.ingest.sources.config.PAGINATOR_DEFAULTS`); ``None`` values are kept
    (``total_path: null`` means "no total").

    The cast: dlt's ``PaginatorConfig`` union has no TypedDict for ``{"type": "single_page"}``,
    though its ``create_paginator`` builds any ``{"type": ...}`` mapping.
    """
    merged = {**PAGINATOR_DEFAULTS.get(paginator["type"], {}), **paginator}
    return cast(DltPaginatorConfig, merged)


def endpoint_dict(endpoint: str | EndpointConfig) -> str | Endpoint:
    """dlt's ``Endpoint`` mapping (the YAML is already in its shape)."""
    if isinstance(endpoint, str):
        return endpoint
    data = endpoint.model_dump(exclude_none=True, by_alias=True)
    if endpoint.paginator is not None:
        data["paginator"] = dlt_paginator(endpoint.paginator)
    if not data.get("headers"):
        data.pop("headers", None)
    return cast(Endpoint, data)


def resource_dict(resource: RestResource) -> EndpointResource:
    """dlt's ``EndpointResource`` mapping for one declared resource."""
    data: EndpointResource = {
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


def rest_api_config(config: RestApiSourceConfig, session: SafeSession) -> RESTAPIConfig:
    """The whole ``RESTAPIConfig`` for ``config``, with our session (retries) and auth."""
    client = ClientConfig(base_url=config.client.base_url, session=session)
    if config.client.headers:
        client["headers"] = dict(config.client.headers)
    if config.client.paginator is not None:
        client["paginator"] = dlt_paginator(config.client.paginator)
    auth = build_auth(config, session)
    if auth is not None:
        client["auth"] = auth
    return RESTAPIConfig(client=client, resources=[resource_dict(r) for r in config.resources])


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
