"""Reading CSV files in pages, streaming (a file is never read into memory whole)."""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.errors import SourceError

PAGE_SIZE = 5_000


def resolve_paths(pattern: str, base_dir: Path) -> list[Path]:
    """Files matching ``pattern`` (a path or glob, relative to ``base_dir``), sorted."""
    full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
    paths = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file())
    if not paths:
        raise SourceError(
            f"No CSV file matches {pattern!r} (looked in {base_dir}). Check the `path` of this "
            "resource in the sources file."
        )
    return paths


def read_pages(
    path: Path, delimiter: str = ",", encoding: str = "utf-8", page_size: int = PAGE_SIZE
) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of ``path`` as lists of dicts; empty cells become ``None``.

    Raises:
        SourceError: the file has no header, a row has more cells than the header, or the bytes
            are not valid in ``encoding``; the message gives the file and line.
    """
    with path.open(newline="", encoding=encoding) as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, restkey="__extra__")
        try:
            if not reader.fieldnames:
                raise SourceError(f"{path} is empty: expected a header row.")
            page: list[dict[str, Any]] = []
            for row in reader:
                if "__extra__" in row:
                    raise SourceError(
                        f"{path}, line {reader.line_num}: more cells than the header has columns. "
                        "Fix the row or its quoting."
                    )
                page.append({k: (v if v != "" else None) for k, v in row.items()})
                if len(page) >= page_size:
                    yield page
                    page = []
            if page:
                yield page
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{path}, line {reader.line_num + 1}: bytes not valid {encoding} ({exc.reason}). "
                "Set `encoding` for this resource (e.g. latin-1) or fix the file."
            ) from None
        except csv.Error as exc:
            raise SourceError(f"{path}, line {reader.line_num}: malformed CSV ({exc}).") from None
