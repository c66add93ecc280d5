"""Flow: warehouse backups (``pg_dump -Fc``, keep ``BACKUP_KEEP``).

Run it ad hoc with ``semantic-index backup``; ``semantic-index backup --list`` shows the dumps and
``semantic-index restore FILE`` restores one. Restore into a fresh database for an exact copy:
create it (``createdb restored``), point ``DATABASE_URL`` at it and run ``restore``. Restoring into
the live database replaces the objects in the dump (``--clean --if-exists``) in one transaction.
"""

from __future__ import annotations

from prefect import flow

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.ops.backup import BackupResult
from tasks.ops.tasks import backup_task


@flow(name="backup", log_prints=True, timeout_seconds=3 * 3600)
def backup() -> BackupResult:
    """Dump the warehouse and prune old dumps."""
    return backup_task()
