"""The sources file: which sources to load, declared in YAML and validated before any load.

Example (``sources.yml`` at the repository root loads the demo catalog)::

    sources:
      - name: demo
        kind: csv
        resources:
          - table: items
            path: data/demo/items.csv
            primary_key: item_id
            write_disposition: merge
            columns: {item_id: bigint, price: double, updated_at: timestamp}

Three kinds, selected by ``kind``: ``csv`` (:class:`CsvSourceConfig`), ``rest_api``
(:class:`RestApiSourceConfig`) and ``web`` (:class:`WebSourceConfig`). docs/sources.md lists
every option. Relative paths are resolved against the sources file's directory. Secrets never go
here: they come from environment variables or dlt's secrets (``SOURCES__<NAME>__...``); a secret
field found in the file is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

import yaml
from dlt.sources.rest_api.typing import (
    HeaderLinkPaginatorConfig,
    IncrementalConfig,
    IncrementalParamConfig,
    JSONLinkPaginatorConfig,
    JSONResponseCursorPaginatorConfig,
    OffsetPaginatorConfig,
    PageNumberPaginatorConfig,
    PaginatorTypeConfig,
    ResolveParamConfig,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.errors import ConfigError
from tasks.settings import check_identifier

#: dlt data types a column hint may name.
DataType = Literal[
    "text", "bigint", "double", "decimal", "bool", "timestamp", "date", "time", "json", "binary"
]

#: What happens to data that does not fit the declared schema (see docs/sources.md).
Contract = Literal["evolve", "freeze", "quarantine"]

WriteDisposition = Literal["merge", "append", "replace"]

#: Fields that hold secrets: they must come from ``SOURCES__<NAME>__<FIELD>``, never the file.
SECRET_FIELDS = frozenset(
    {"token", "api_key", "password", "client_secret", "client_id", "secret", "access_token"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _identifier(value: str, what: str) -> str:
    return check_identifier(value, what)


class HttpOptions(_Strict):
    """How HTTP requests are made: timeouts and retries (transient errors only: tasks/retry.py)."""

    timeout_s: float = Field(default=30.0, gt=0, description="Connect/read timeout per request.")
    max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per request, first too.")
    backoff_s: float = Field(
        default=1.0, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    max_backoff_s: float = Field(
        default=60.0, ge=0, description="Cap on one delay, including a server's Retry-After."
    )
    user_agent: str = Field(
        default="semantic-index-pipeline/0.1 (+https://github.com/)",
        description="User-Agent header sent with every request.",
    )


class _SourceBase(_Strict):
    name: str
    contract: Contract = Field(
        default="evolve",
        description="evolve: new columns/tables are added; freeze: any change or bad value fails "
        "the load; quarantine: rows with bad values go to `<table>__rejected`.",
    )
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("name")
    @classmethod
    def _source_name(cls, value: str) -> str:
        return _identifier(value, "source name")


# --------------------------------------------------------------------------------------- csv


class CsvResource(_Strict):
    """One CSV file (or glob of files, or URL) with the same columns loaded into one table."""

    table: str
    path: str = Field(
        description="File path or glob (relative to the sources file) or an http(s) URL."
    )
    primary_key: str | list[str] | None = None
    write_disposition: WriteDisposition = "merge"
    columns: dict[str, DataType] = Field(default_factory=dict, description="Column type hints.")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote_char: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = Field(default=True, description="First row holds the column names.")
    column_names: list[str] | None = Field(
        default=None, description="Column names when `header: false` (or to replace the header)."
    )
    skip_rows: int = Field(default=0, ge=0, description="Lines to skip before the header/data.")
    incremental: bool = Field(
        default=True,
        description="Skip files already loaded and unchanged (mtime+size, or ETag/Last-Modified).",
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return _identifier(value, "table name")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CsvResource:
        if self.write_disposition == "merge" and not self.primary_key:
            raise ValueError("write_disposition merge needs a primary_key")
        if not self.header and not self.column_names:
            raise ValueError("header: false needs column_names")
        return self

    @property
    def is_url(self) -> bool:
        """Whether ``path`` is an http(s) URL rather than a local path or glob."""
        return urlsplit(self.path).scheme in ("http", "https")


class CsvSourceConfig(_SourceBase):
    """A set of CSV files."""

    kind: Literal["csv"]
    resources: list[CsvResource] = Field(min_length=1)
    allow_private_addresses: bool = Field(
        default=False, description="Allow URLs that resolve to loopback/private addresses."
    )


# ---------------------------------------------------------------------------------- rest_api


class _Secretless(_Strict):
    """Refuses secret fields with a message that says where they belong."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(SECRET_FIELDS & set(data))
            if found:
                raise ValueError(
                    f"secret field(s) {found} must not be in the sources file: set them as "
                    "environment variables SOURCES__<NAME>__<FIELD> (e.g. SOURCES__MYAPI__TOKEN) "
                    "or in .dlt/secrets.toml under [sources.<name>]"
                )
        return data


class BearerAuth(_Secretless):
    """``Authorization: Bearer <token>``; token from ``SOURCES__<NAME>__TOKEN``."""

    type: Literal["bearer"]


class ApiKeyAuth(_Secretless):
    """An API key in a header or query parameter; key from ``SOURCES__<NAME>__API_KEY``."""

    type: Literal["api_key"]
    name: str = "Authorization"
    location: Literal["header", "query"] = "header"


class BasicAuth(_Secretless):
    """HTTP basic auth; password from ``SOURCES__<NAME>__PASSWORD``."""

    type: Literal["http_basic"]
    username: str | None = Field(
        default=None, description="Or SOURCES__<NAME>__USERNAME when it is itself sensitive."
    )


class OAuth2ClientCredentialsAuth(_Secretless):
    """OAuth2 client credentials; SOURCES__<NAME>__CLIENT_ID / __CLIENT_SECRET."""

    type: Literal["oauth2_client_credentials"]
    access_token_url: str
    access_token_request_data: dict[str, Any] = Field(default_factory=dict)
    default_token_expiration: int = 3600


AuthConfig = Annotated[
    BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentialsAuth,
    Field(discriminator="type"),
]


def _type_tag(value: Any) -> str | None:
    """The ``type`` of a paginator or parameter binding: the tag of its union member."""
    return value.get("type") if isinstance(value, dict) else None


def _offset_needs_limit(value: OffsetPaginatorConfig) -> OffsetPaginatorConfig:
    # dlt's TypedDict leaves `limit` optional, but its OffsetPaginator cannot be built without one.
    limit = value.get("limit")
    if not isinstance(limit, int) or limit <= 0:
        raise ValueError("the offset paginator needs `limit`, a positive number of rows per page")
    return value


#: A paginator, in the shape of dlt's own paginator configs (``dlt.sources.rest_api.typing``),
#: selected by ``type``. Only the dict forms: the file cannot name paginator classes, and the
#: bare-string form (``paginator: json_link``) would skip these checks.
PaginatorConfig = Annotated[
    Annotated[PageNumberPaginatorConfig, Tag("page_number")]
    | Annotated[OffsetPaginatorConfig, AfterValidator(_offset_needs_limit), Tag("offset")]
    | Annotated[JSONResponseCursorPaginatorConfig, Tag("cursor")]
    | Annotated[HeaderLinkPaginatorConfig, Tag("header_link")]
    | Annotated[JSONLinkPaginatorConfig, Tag("json_link")]
    | Annotated[PaginatorTypeConfig, Tag("single_page")],
    Discriminator(
        _type_tag,
        custom_error_type="paginator_type",
        custom_error_message="paginator `type` must be one of page_number, offset, cursor, "
        "header_link, json_link, single_page",
    ),
]

#: Where our defaults differ from dlt's paginator classes (dlt: ``base_page`` 0 and
#: ``total_path: total``). The sources file has always meant these (docs/sources.md), so
#: :func:`tasks.ingest.sources.rest_api.helpers.dlt_paginator` fills them in.
PAGINATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "page_number": {"base_page": 1, "page_param": "page", "total_path": None},
    "offset": {"offset_param": "offset", "limit_param": "limit", "total_path": None},
    "cursor": {"cursor_param": "cursor"},
}

#: A parameter bound to a parent resource's field or to an incremental cursor (dlt's
#: ``ResolveParamConfig`` / ``IncrementalParamConfig``), selected by ``type``.
ParamSpec = Annotated[
    Annotated[ResolveParamConfig, Tag("resolve")]
    | Annotated[IncrementalParamConfig, Tag("incremental")],
    Discriminator(
        _type_tag,
        custom_error_type="parameter_type",
        custom_error_message="parameter `type` must be resolve or incremental",
    ),
]


class _DltTyped(_Strict):
    # dlt's TypedDicts type JSON paths as `str | jsonpath_ng.JSONPath`; the file gives strings.
    model_config = ConfigDict(arbitrary_types_allowed=True)


class EndpointConfig(_DltTyped):
    """The subset of dlt's ``Endpoint`` a sources file may set; the nested paginator,
    parameter bindings and incremental are dlt's own types.

    Not dlt's ``Endpoint`` itself: it also allows ``auth`` (secrets) and callables
    (``response_actions``), which a YAML file must not or cannot hold.
    """

    path: str | None = None
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, ParamSpec | str | int | float | bool | None] = Field(default_factory=dict)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    paginator: PaginatorConfig | None = None
    data_selector: str | None = None
    incremental: IncrementalConfig | None = Field(
        default=None, description="dlt's incremental: cursor_path, start_param, end_param, ..."
    )
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if k.lower() in {"authorization", "x-api-key", "api-key"}]
        if bad:
            raise ValueError(f"header(s) {bad} carry secrets: use `auth` instead")
        return value


class RestResource(_Strict):
    """One endpoint loaded into one table (dlt's ``EndpointResource``)."""

    name: str
    endpoint: str | EndpointConfig
    primary_key: str | list[str] | None = None
    write_disposition: WriteDisposition = "merge"
    columns: dict[str, DataType] = Field(default_factory=dict)
    include_from_parent: list[str] = Field(default_factory=list)
    selected: bool = True
    max_table_nesting: int | None = None

    @field_validator("name")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return _identifier(value, "resource name")

    @model_validator(mode="after")
    def _merge_key(self) -> RestResource:
        if self.write_disposition == "merge" and not self.primary_key:
            raise ValueError("write_disposition merge needs a primary_key")
        return self


class ClientConfig(_DltTyped):
    """dlt's ``ClientConfig``: base URL, extra headers, auth and the default paginator."""

    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    paginator: PaginatorConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"base_url {value!r} must be an http(s) URL")
        return value

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return EndpointConfig._no_secret_headers(value)


class RestApiSourceConfig(_SourceBase):
    """A REST API, loaded with dlt's declarative ``rest_api`` source."""

    kind: Literal["rest_api"]
    client: ClientConfig
    resources: list[RestResource] = Field(min_length=1)

    @model_validator(mode="after")
    def _parents_exist(self) -> RestApiSourceConfig:
        names = {r.name for r in self.resources}
        for r in self.resources:
            if isinstance(r.endpoint, EndpointConfig):
                for value in r.endpoint.params.values():
                    if not isinstance(value, dict) or value["type"] != "resolve":
                        continue
                    parent = cast(ResolveParamConfig, value)["resource"]
                    if parent not in names:
                        raise ValueError(
                            f"resource {r.name!r} resolves from unknown resource "
                            f"{parent!r}; declared: {sorted(names)}"
                        )
        return self


# --------------------------------------------------------------------------------------- web


class WebSourceConfig(_SourceBase):
    """Web pages crawled from seed URLs, stored as clean text (one row per page)."""

    kind: Literal["web"]
    seeds: list[str] = Field(min_length=1)
    table: str = "pages"
    allowed_domains: list[str] = Field(
        default_factory=list, description="Hosts to stay within. Default: the seeds' hosts."
    )
    max_pages: int = Field(default=100, ge=1)
    max_depth: int = Field(default=3, ge=0)
    respect_robots_txt: bool = True
    delay_s: float = Field(default=1.0, ge=0, description="Pause between requests to a host.")
    include_patterns: list[str] = Field(default_factory=list, description="URL regexes to keep.")
    exclude_patterns: list[str] = Field(default_factory=list, description="URL regexes to skip.")
    max_page_bytes: int = Field(default=5_000_000, gt=0)
    allow_private_addresses: bool = False

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return _identifier(value, "table name")

    @field_validator("seeds")
    @classmethod
    def _http_seeds(cls, value: list[str]) -> list[str]:
        for url in value:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"seed {url!r} must be an absolute http(s) URL")
        return value

    @property
    def domains(self) -> list[str]:
        """Allowed hosts: the declared ones, else the seeds' hosts."""
        return self.allowed_domains or sorted({urlsplit(u).hostname or "" for u in self.seeds})


SourceConfig = Annotated[
    CsvSourceConfig | RestApiSourceConfig | WebSourceConfig, Field(discriminator="kind")
]
AnySourceConfig = CsvSourceConfig | RestApiSourceConfig | WebSourceConfig


class SourcesFile(_Strict):
    """The whole sources file."""

    sources: list[SourceConfig] = Field(min_length=1)
    base_dir: Path = Path(".")

    def get(self, names: list[str] | None) -> list[AnySourceConfig]:
        """The sources called ``names`` (all when ``None``), in file order."""
        if names is None:
            return list(self.sources)
        known = {s.name: s for s in self.sources}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"Unknown source(s) {unknown}; the sources file declares {sorted(known)}"
            )
        return [known[n] for n in names]


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest YAML node that ``loc`` (a pydantic error path) reaches.

    Path parts that are not in the document (discriminator tags such as ``csv``) are skipped.
    """
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            continue
        node = child
        line = line if isinstance(node, yaml.ScalarNode) else node.start_mark.line + 1
    return line


def _error_loc(err: Any) -> tuple[int | str, ...]:
    """The error's path; a bad discriminator (``kind``, ``type``) points at that field."""
    loc = tuple(err["loc"])
    if err["type"] in (
        "union_tag_invalid",
        "union_tag_not_found",
        "paginator_type",
        "parameter_type",
    ):
        # Field discriminators name their field (`'kind'`); the callable ones (paginators,
        # parameter bindings: our own error types) carry no context and all read `type`.
        loc += (str((err.get("ctx") or {}).get("discriminator", "type")).strip("'"),)
    return loc


def load_sources_file(path: Path) -> SourcesFile:
    """Parse and validate a sources file.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is wrong; the message names the
            file, the line and the field (e.g. ``sources.yml:12: sources.0.resources.1.path``).
    """
    if not path.is_file():
        raise ConfigError(f"Sources file {path} not found: create it or set SOURCES_FILE.")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Sources file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Sources file {path} must be a mapping with a `sources:` list.")
    try:
        parsed = SourcesFile.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{path}:{_line_of(root, loc)}: {'.'.join(str(p) for p in loc)}: {err['msg']}"
            for err in exc.errors()
            for loc in [_error_loc(err)]
        )
        raise ConfigError(f"Sources file {path} is invalid: {problems}") from None
    names = [s.name for s in parsed.sources]
    if len(names) != len(set(names)):
        raise ConfigError(f"Sources file {path} declares a source name twice: {names}")
    return parsed
