"""The warehouse: embedded server by default, the user's server when DATABASE_URL is set."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from tasks.errors import WarehouseError
from tasks.settings import get_settings
from tasks.warehouse import Warehouse, get_warehouse, stop_embedded
from tests.conftest import reset_caches


def test_database_url_is_used_as_is(env: pytest.MonkeyPatch, database_url: str) -> None:
    w = get_warehouse()
    assert not w.embedded
    with w.connect() as conn:
        row = conn.execute("select current_database()").fetchone()
        assert row is not None and row[0] in database_url
    assert get_warehouse() is w  # cached per process


def test_embedded_server_starts_persists_and_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    reset_caches()
    w = get_warehouse()
    assert w.embedded and w.pgdata == tmp_path / "state" / "pgdata"
    with w.connect(autocommit=True) as conn:
        conn.execute("create table kept (x int)")
        conn.execute("insert into kept values (42)")
    assert stop_embedded(get_settings())
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(w.conninfo, connect_timeout=2)

    reset_caches()
    again = get_warehouse()  # restarts on the same data directory
    with again.connect() as conn:
        assert conn.execute("select x from kept").fetchone() == (42,)
    assert stop_embedded(get_settings())
    reset_caches()


def test_unreachable_server_names_the_fix(env: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    env.setenv("DATABASE_URL", f"postgresql://u:secretpw@127.0.0.1:{port}/db")
    reset_caches()
    with pytest.raises(WarehouseError) as err:
        get_warehouse()
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "DATABASE_URL" in message
    assert "secretpw" not in message


def test_tool_specific_connection_strings() -> None:
    socket_dir = Warehouse(conninfo="host=/tmp/pg user=postgres dbname=postgres", embedded=True)
    assert (
        socket_dir.dlt_credentials()
        == "postgresql://postgres:embedded@localhost/postgres?host=/tmp/pg"
    )
    assert socket_dir.dbt_env()["DBT_PG_HOST"] == "/tmp/pg"

    tcp = Warehouse(
        conninfo="postgresql://app:p%40ss@db.internal:6543/wh?sslmode=require", embedded=False
    )
    assert tcp.dlt_credentials() == "postgresql://app:p%40ss@db.internal:6543/wh?sslmode=require"
    env = tcp.dbt_env()
    assert env["DBT_PG_PORT"] == "6543" and env["DBT_ENV_SECRET_PG_PASSWORD"] == "p@ss"
    assert env["DBT_PG_SSLMODE"] == "require"
    assert "p@ss" not in tcp.display and "db.internal:6543" in tcp.display
