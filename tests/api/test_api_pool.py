"""The search pool hands out only live connections: one the server dropped while idle is
replaced before a request uses it, so the request is answered, not failed."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import httpx
import psycopg

from api.main import create_app
from tests.api.conftest import API_KEYS, demo_settings, serve

KEY = {"X-API-Key": API_KEYS[0]}


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    demo_index: dict[str, Any],
) -> None:
    settings = demo_settings(demo_index, search_api_pool_size=1)
    app = create_app(settings)
    with contextmanager(serve)(settings, app) as url:
        first = httpx.post(f"{url}/search", json={"query": "tent"}, headers=KEY, timeout=60)
        assert first.status_code == 200, first.text
        pool = app.state.service.pool
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        # What a server restart, a failover or an idle timeout in a proxy does to a pooled
        # connection: the server ends it while the pool holds it idle.
        assert settings.database_url is not None
        with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as admin:
            assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        again = httpx.post(f"{url}/search", json={"query": "tent"}, headers=KEY, timeout=60)
        assert again.status_code == 200, again.text
        with pool.connection() as conn:
            assert conn.info.backend_pid != pid
