"""dbt's ``manifest.json``, read once and typed: the one reader for every stage after dbt.

The indexer (``tasks.index.documents.load_specs``: which models declare ``meta.embedding``) and
the search service (``tasks.search.searcher``: the declared column types behind filters) both
read the manifest through :func:`read_manifest`.

Why a small reader of our own instead of dbt's ``WritableManifest``
(``dbt.artifacts.schemas.manifest``):

* dbt-core 1.11.16 cannot read back the manifest it writes: the function materializations of
  its global project declare ``supported_languages: [sql, python, javascript]``, and its
  ``ModelLanguage`` enum has no ``javascript``, so ``WritableManifest.from_dict`` raises
  ``InvalidFieldValue`` on every manifest of this project;
* importing ``dbt.artifacts`` (even only ``dbt.artifacts.resources.types`` for ``NodeType``)
  costs 1-3 s on these cores, paid at each start of the search service, which otherwise never
  imports dbt.

So this module types only the fields read downstream, in the shape of manifest schema v12
(``https://schemas.getdbt.com/dbt/manifest/v12.json``), and ignores everything else. Node types
are compared with :data:`MODEL`, the value of dbt's ``NodeType.Model``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import ConfigError

#: ``dbt.artifacts.resources.types.NodeType.Model.value`` (see the module docstring for why
#: dbt's enum is not imported).
MODEL = "model"

#: The manifest's file name inside dbt's target folder.
MANIFEST_FILE = "manifest.json"


class _Lenient(BaseModel):
    # A manifest carries many more fields than we read; newer dbt versions add more.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ManifestColumn(_Lenient):
    """One column of a node as its yml declares it."""

    name: str
    data_type: str | None = None


class NodeConfig(_Lenient):
    """The part of a node's resolved ``config`` read downstream."""

    meta: dict[str, Any] = Field(default_factory=dict)


class FileHash(_Lenient):
    """A node's ``checksum``: dbt's hash of the node's file (``sha256`` for models)."""

    name: str = ""
    checksum: str = ""


class ManifestNode(_Lenient):
    """One entry of the manifest's ``nodes`` (models, tests, seeds, snapshots, ...)."""

    resource_type: str
    name: str
    schema_name: str = Field(alias="schema")
    alias: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    config: NodeConfig = Field(default_factory=NodeConfig)
    columns: dict[str, ManifestColumn] = Field(default_factory=dict)
    checksum: FileHash = Field(default_factory=FileHash)

    @property
    def relation(self) -> str:
        """The relation dbt builds: the alias when set, else the node's name."""
        return self.alias or self.name

    @property
    def resolved_meta(self) -> dict[str, Any]:
        """``meta`` as dbt resolved it: ``config.meta`` (dbt 1.10+), else the top-level key."""
        return self.config.meta or self.meta

    @property
    def column_types(self) -> dict[str, str]:
        """Declared ``data_type`` of each column, lower-cased; columns without one left out."""
        return {
            name: column.data_type.lower()
            for name, column in self.columns.items()
            if column.data_type
        }


class Manifest(_Lenient):
    """The fields of ``manifest.json`` read downstream of dbt."""

    nodes: dict[str, ManifestNode] = Field(default_factory=dict)

    def models(self) -> dict[str, ManifestNode]:
        """The model nodes, by dbt unique id, in manifest order."""
        return {uid: node for uid, node in self.nodes.items() if node.resource_type == MODEL}

    def fingerprint(self) -> str:
        """A hash of what the models are: every node's file checksum, relation, resolved
        ``meta`` and declared column types.

        Not a hash of the file: dbt writes a new ``generated_at`` and ``invocation_id`` at every
        invocation, so the file's bytes differ between two builds of the same models. This hash
        changes only when a node's SQL or the yml the pipeline reads (``meta.embedding``, column
        types) changes: what the runs' version records compare.
        """
        nodes = {
            uid: {
                "checksum": node.checksum.checksum,
                "relation": f"{node.schema_name}.{node.relation}",
                "meta": node.resolved_meta,
                "columns": node.column_types,
            }
            for uid, node in self.nodes.items()
        }
        payload = json.dumps(nodes, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def manifest_path(target_dir: Path) -> Path:
    """Where dbt writes the manifest inside its target folder."""
    return target_dir / MANIFEST_FILE


def read_manifest(path: Path) -> Manifest:
    """Parse and type the manifest at ``path``.

    Raises:
        ConfigError: there is no manifest (run the transform step first), or it is not a dbt
            manifest (truncated, or written by an incompatible dbt).
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"No dbt manifest at {path}: run the transform step (or `dbt parse`) first."
        ) from None
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"dbt manifest {path} is unreadable ({exc.error_count()} problem(s), first at "
            f"{where or 'the top'}: {first['msg']}). Re-run the transform step (or `dbt parse`) "
            "to write it again."
        ) from None
