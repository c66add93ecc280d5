"""Tests never see the developer's configuration: settings variables and ``.env`` files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.settings import Settings, get_settings
from tests.conftest import REPO, SETTINGS_ENV, clear_settings_env, settings_env_names

STRAY = "stray-from-the-developer"


def stray_dotenv(folder: Path) -> Path:
    """A ``.env`` in ``folder`` that sets every setting to a stray (mostly invalid) value."""
    path = folder / ".env"
    path.write_text("".join(f"{name}={STRAY}\n" for name in SETTINGS_ENV), encoding="utf-8")
    return path


def test_every_settings_field_is_covered() -> None:
    assert len(settings_env_names()) == len(Settings.model_fields)
    assert {name.upper() for name in Settings.model_fields} == set(SETTINGS_ENV)


def test_a_stray_environment_and_dotenv_do_not_reach_a_test_session(tmp_path: Path) -> None:
    """A child pytest session started with every settings variable set (one in lower case, which
    ``Settings`` reads too) and a ``.env`` in its working directory sees only the defaults."""
    stray_dotenv(tmp_path)
    env = {**os.environ, **dict.fromkeys(SETTINGS_ENV, STRAY), "raw_schema": STRAY}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'pt'}",
            str(REPO / "tests" / "isolation_probe.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_stray_dotenv_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Session fixtures (the demo index) export DATABASE_URL and DATA_DIR on purpose: clear them,
    # so the .env below is the only place a setting could come from.
    clear_settings_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    stray_dotenv(tmp_path)
    get_settings.cache_clear()
    assert get_settings().model_dump() == Settings.model_construct().model_dump()
    get_settings.cache_clear()


def test_a_process_a_test_starts_does_not_read_a_stray_dotenv(tmp_path: Path) -> None:
    """The CLI, uvicorn or a bench that a test starts inherits the session's "no ``.env``"."""
    stray_dotenv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k.lower() not in settings_env_names()}
    probe = (
        "from tasks.settings import Settings; "
        "assert Settings().model_dump() == Settings.model_construct().model_dump(); print('clean')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "clean"


def test_outside_tests_the_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RAW_SCHEMA=from_dotenv\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.lower() not in settings_env_names()}
    env.pop("SEMANTIC_INDEX_ENV_FILE", None)
    probe = "from tasks.settings import Settings; print(Settings().raw_schema)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "from_dotenv"


def test_clear_settings_env_removes_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_ENV:
        monkeypatch.setenv(name, STRAY)
    monkeypatch.setenv("Vector_Store", STRAY)  # Settings ignores case: so does the clean-up
    clear_settings_env(monkeypatch)
    assert [key for key in os.environ if key.lower() in settings_env_names()] == []


@pytest.fixture
def stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every setting set to a stray value before the ``env`` fixture runs."""
    for name in SETTINGS_ENV:
        monkeypatch.setenv(name, STRAY)


def test_env_fixture_starts_from_the_defaults(
    stray_env: None, env: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = get_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == database_url
    expected = Settings.model_construct().model_dump(exclude={"database_url", "data_dir"})
    assert settings.model_dump(exclude={"database_url", "data_dir"}) == expected
