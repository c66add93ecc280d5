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

Relative paths are resolved against the sources file's directory. Secrets never go here: they
come from environment variables or dlt's secrets (``SOURCES__<NAME>__...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.errors import ConfigError
from tasks.settings import check_identifier

#: dlt data types a column hint may name.
DataType = Literal[
    "text", "bigint", "double", "decimal", "bool", "timestamp", "date", "time", "json", "binary"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvResource(_Strict):
    """One CSV file (or glob of files with the same columns) loaded into one table."""

    table: str
    path: str = Field(description="File path or glob, relative to the sources file.")
    primary_key: str | list[str]
    write_disposition: Literal["merge", "append", "replace"] = "merge"
    columns: dict[str, DataType] = Field(default_factory=dict, description="Column type hints.")
    delimiter: str = ","
    encoding: str = "utf-8"

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return check_identifier(value, "table name")


class CsvSourceConfig(_Strict):
    """A set of CSV files."""

    name: str
    kind: Literal["csv"]
    resources: list[CsvResource] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _source_name(cls, value: str) -> str:
        return check_identifier(value, "source name")


SourceConfig = Annotated[CsvSourceConfig, Field(discriminator="kind")]


class SourcesFile(_Strict):
    """The whole sources file."""

    sources: list[SourceConfig] = Field(min_length=1)
    base_dir: Path = Path(".")

    def get(self, names: list[str] | None) -> list[CsvSourceConfig]:
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


def load_sources_file(path: Path) -> SourcesFile:
    """Parse and validate a sources file.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is wrong; the message names the
            file and the field (e.g. ``sources.0.resources.1.primary_key``).
    """
    if not path.is_file():
        raise ConfigError(f"Sources file {path} not found: create it or set SOURCES_FILE.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"Sources file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Sources file {path} must be a mapping with a `sources:` list.")
    try:
        parsed = SourcesFile.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Sources file {path} is invalid: {problems}") from None
    names = [s.name for s in parsed.sources]
    if len(names) != len(set(names)):
        raise ConfigError(f"Sources file {path} declares a source name twice: {names}")
    return parsed
