"""Documents to embed, declared in the dbt project and read from the warehouse.

A dbt model opts in to indexing with ``meta.embedding`` in its yml (see
``dbt_models/models/analytics/_analytics__models.yml``)::

    config:
      meta:
        embedding:
          id_column: document_id
          text_columns: [title, body]
          text_separator: "\\n\\n"
          title_column: title
          url_column: url
          updated_at_column: updated_at
          metadata_columns: [category, brand, price]
          namespace: products
          sections_column: sections   # optional: JSON sections of the last text column

so analysts add a model to the index without touching Python. The declarations are read from
dbt's ``target/manifest.json``, written by every dbt invocation, through the one manifest reader
(:mod:`tasks.transform.manifest`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.errors import ConfigError
from tasks.index.chunking import Section, sections_from_json
from tasks.settings import Settings, check_identifier
from tasks.stores.base import MetadataValue, check_namespace
from tasks.transform.manifest import Manifest, manifest_path, read_manifest
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)


class EmbeddingSpec(BaseModel):
    """``meta.embedding`` of one dbt model, plus where the model lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="dbt unique id, e.g. model.semantic_index.documents")
    schema_name: str
    relation: str
    id_column: str
    text_columns: list[str] = Field(min_length=1)
    text_separator: str = "\n\n"
    title_column: str | None = None
    url_column: str | None = None
    updated_at_column: str | None = None
    metadata_columns: list[str] = Field(default_factory=list)
    namespace: str
    sections_column: str | None = Field(
        default=None,
        description="JSON list of sections (start/end offsets into the LAST text column, "
        "heading path), as the web source stores them; chunking cuts along them "
        "(CHUNK_SECTIONS).",
    )

    @field_validator(
        "schema_name",
        "relation",
        "id_column",
        "title_column",
        "url_column",
        "updated_at_column",
        "sections_column",
    )
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, "column or relation name")

    @field_validator("text_columns", "metadata_columns")
    @classmethod
    def _idents(cls, values: list[str]) -> list[str]:
        return [check_identifier(v, "column name") for v in values]

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_namespace(value)

    @property
    def columns(self) -> list[str]:
        """Every column the indexer reads, without repeats, id first."""
        wanted = [
            self.id_column,
            *self.text_columns,
            self.title_column,
            self.url_column,
            self.updated_at_column,
            *self.metadata_columns,
            self.sections_column,
        ]
        return list(dict.fromkeys(c for c in wanted if c))


@dataclass(frozen=True)
class Document:
    """One row of a documents model, ready to chunk."""

    id: str
    text: str
    title: str | None
    url: str | None
    updated_at: str | None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    #: Sections with offsets into ``text`` (empty when the model declares none).
    sections: tuple[Section, ...] = ()


def load_specs(source: Settings | Path | Manifest) -> list[EmbeddingSpec]:
    """Every model with ``meta.embedding`` in the dbt manifest.

    ``source`` is the settings (manifest in ``settings.dbt_target_dir``, where the transform
    step writes it), a dbt project folder (manifest in its ``target/``, as after a manual
    ``dbt parse``) or a manifest already read (:func:`tasks.transform.manifest.read_manifest`).

    Raises:
        ConfigError: no manifest yet, a declaration is malformed, or two models share a namespace.
    """
    if isinstance(source, Manifest):
        manifest = source
    else:
        target = source.dbt_target_dir if isinstance(source, Settings) else source / "target"
        manifest = read_manifest(manifest_path(target))
    specs: list[EmbeddingSpec] = []
    for unique_id, node in manifest.models().items():
        declared = node.resolved_meta.get("embedding")
        if not declared:
            continue
        try:
            specs.append(
                EmbeddingSpec(
                    model=unique_id,
                    schema_name=node.schema_name,
                    relation=node.relation,
                    **declared,
                )
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"meta.embedding of {unique_id} is invalid: {problems}") from None
    namespaces = [s.namespace for s in specs]
    if len(namespaces) != len(set(namespaces)):
        raise ConfigError(f"Two dbt models declare the same embedding namespace: {namespaces}")
    return specs


def count_documents(warehouse: Warehouse, spec: EmbeddingSpec) -> int:
    """How many rows the documents model of ``spec`` has (0 if it does not exist yet)."""
    query = sql.SQL("select count(*) from {schema}.{rel}").format(
        schema=sql.Identifier(spec.schema_name), rel=sql.Identifier(spec.relation)
    )
    with warehouse.connect() as conn:
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0  # fetch_documents says what to do about it
    return int(row[0]) if row else 0


def relation(spec: EmbeddingSpec) -> sql.Composed:
    """The documents model of ``spec`` as a SQL identifier (``schema.relation``)."""
    return sql.SQL("{}.{}").format(sql.Identifier(spec.schema_name), sql.Identifier(spec.relation))


def fetch_documents(
    warehouse: Warehouse,
    spec: EmbeddingSpec,
    *,
    after: str | None = None,
    through: str | None = None,
) -> Iterator[Document]:
    """Stream the documents of ``spec`` from the warehouse, ordered by id.

    ``after`` and ``through`` bound a keyset page (``after < id <= through``, compared in the
    id column's own type and collation, the order of the stream), so a page can be read again
    without an offset scan.

    Raises:
        ConfigError: a declared column does not exist in the model.
    """
    with warehouse.connect() as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s",
                (spec.schema_name, spec.relation),
            ).fetchall()
        }
        if not existing:
            raise ConfigError(
                f"{spec.schema_name}.{spec.relation} does not exist: run the transform step first."
            )
        missing = [c for c in spec.columns if c not in existing]
        if missing:
            raise ConfigError(
                f"meta.embedding of {spec.model} names columns {missing} that "
                f"{spec.schema_name}.{spec.relation} does not have."
            )
        key = sql.Identifier(spec.id_column)
        bounds: list[sql.Composable] = []
        params: list[str] = []
        if after is not None:
            bounds.append(sql.SQL("{} > %s").format(key))
            params.append(after)
        if through is not None:
            bounds.append(sql.SQL("{} <= %s").format(key))
            params.append(through)
        where = sql.SQL(" and ").join(bounds) if bounds else sql.SQL("true")
        query = sql.SQL("select {cols} from {rel} where {where} order by {id}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns),
            rel=relation(spec),
            where=where,
            id=key,
        )
        with conn.cursor(name="documents") as cur:
            cur.itersize = 2000
            cur.execute(query, params)
            for row in cur:
                yield _to_document(spec, dict(zip(spec.columns, row, strict=True)))


def _to_document(spec: EmbeddingSpec, row: dict[str, Any]) -> Document:
    parts = [str(row[c]) for c in spec.text_columns if row[c] is not None and str(row[c]).strip()]
    text = spec.text_separator.join(part.strip() for part in parts)
    metadata = {c: v for c in spec.metadata_columns if (v := to_metadata_value(row[c])) is not None}
    updated = row[spec.updated_at_column] if spec.updated_at_column else None
    return Document(
        id=str(row[spec.id_column]),
        text=text,
        title=str(row[spec.title_column]) if spec.title_column and row[spec.title_column] else None,
        url=str(row[spec.url_column]) if spec.url_column and row[spec.url_column] else None,
        updated_at=to_metadata_value(updated),  # type: ignore[arg-type]
        metadata=metadata,
        sections=document_sections(spec, row, parts, text),
    )


def document_sections(
    spec: EmbeddingSpec, row: dict[str, Any], parts: list[str], text: str
) -> tuple[Section, ...]:
    """The row's sections with offsets moved from its last text column into the joined text.

    Raises:
        ConfigError: the sections column does not hold sections (names the document).
    """
    if not spec.sections_column or row[spec.sections_column] is None:
        return ()
    last = spec.text_columns[-1]
    if not parts or row[last] is None or str(row[last]) != parts[-1]:
        return ()  # the column the offsets point into is empty
    try:
        sections = sections_from_json(row[spec.sections_column])
    except ValueError as exc:
        raise ConfigError(
            f"{spec.sections_column} of document {row[spec.id_column]} in {spec.model} is not "
            f"a list of sections ({exc}): select the web source's `sections` column there."
        ) from None
    # The last part sits at the end of the joined text, its leading whitespace stripped.
    lead = len(parts[-1]) - len(parts[-1].lstrip())
    offset = len(text) - len(parts[-1].strip()) - lead
    return tuple(s.shifted(offset, len(text)) for s in sections)


def to_metadata_value(value: Any) -> MetadataValue | None:
    """A warehouse value as a flat metadata value (dates as ISO strings; nulls dropped)."""
    if value is None:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)
