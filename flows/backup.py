"""Flow and command line for warehouse backups.

Usage::

    python -m flows.backup                 # run the backup flow (pg_dump -Fc, keep BACKUP_KEEP)
    python -m flows.backup list            # backups in BACKUP_DIR, oldest first
    python -m flows.backup restore FILE    # pg_restore FILE into DATABASE_URL's database

Restore into a fresh database for an exact copy: create it (``createdb restored``), point
``DATABASE_URL`` at it and run ``restore``. Restoring into the live database replaces the objects
in the dump (``--clean --if-exists``) in one transaction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import flows  # noqa: F401  (offline defaults, before Prefect reads its settings)

from prefect import flow

import flows  # noqa: F401  (offline defaults)
from tasks.errors import PipelineError
from tasks.ops.backup import BackupResult, backup_dir, list_backups, restore
from tasks.ops.tasks import backup_task
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse


@flow(name="backup", log_prints=True, timeout_seconds=3 * 3600)
def backup() -> BackupResult:
    """Dump the warehouse and prune old dumps."""
    return backup_task()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.backup", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="Run the backup flow (the default).")
    sub.add_parser("list", help="List the backups in BACKUP_DIR.")
    rest = sub.add_parser("restore", help="Restore a backup into DATABASE_URL's database.")
    rest.add_argument("file", type=Path, help="A file written by the backup flow.")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for path in list_backups(backup_dir(get_settings())):
                print(path)
            return 0
        if args.command == "restore":
            warehouse = get_warehouse(get_settings())
            restore(args.file, warehouse)
            print(f"Restored {args.file} into {warehouse.display}")
            return 0
        result = backup()
        print(f"Backup written: {result.path} ({result.size_bytes} bytes)")
        return 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
