"""``python flows/main.py`` as a new user runs it: a fresh data dir, no Prefect server, a busy
machine, a project with two embedding namespaces, then the documented follow-up commands.

Everything runs as subprocesses with their own ``DATA_DIR`` and ``PREFECT_HOME``, so Prefect's
temporary server starts (and migrates a new SQLite database) exactly as on a fresh clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SETTINGS_ENV

#: A second documents model, declared the way an analyst would add one.
REVIEWS_MODEL = """
with reviews as (
    select * from {{ ref('reviews') }}
),
final as (
    select
        'review:' || review_id as document_id,
        coalesce(review_title, 'Review ' || review_id) as title,
        coalesce(review_body, '') as body,
        rating
    from reviews
)
select * from final
"""

REVIEWS_YML = """
version: 2
models:
  - name: review_documents
    description: One row per review, embedded in its own namespace.
    config:
      meta:
        embedding:
          id_column: document_id
          text_columns: [title, body]
          title_column: title
          metadata_columns: [rating]
          namespace: reviews
    columns:
      - name: document_id
        data_tests: [unique, not_null]
"""


def clean_env(**values: str) -> dict[str, str]:
    """The machine's environment without our settings or a Prefect server, plus ``values``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in SETTINGS_ENV and not k.startswith("PREFECT_")
    }
    env.update(values)
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a command from the checkout as a user would."""
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Keep every core busy with other processes for the duration of the test (bounded)."""
    spin = "import time\nend = time.time() + 1200\nwhile time.time() < end: pass"
    procs = [
        subprocess.Popen([sys.executable, "-c", spin]) for _ in range(max(os.cpu_count() or 2, 2))
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def two_namespace_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the dbt project with a second documents model (namespace ``reviews``)."""
    project = tmp_path_factory.mktemp("dbt") / "dbt_models"
    shutil.copytree(
        REPO / "dbt_models",
        project,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    (project / "models" / "analytics" / "review_documents.sql").write_text(REVIEWS_MODEL)
    (project / "models" / "analytics" / "_review_documents.yml").write_text(REVIEWS_YML)
    return project


@pytest.mark.integration
def test_first_run_on_a_busy_machine_with_two_namespaces(
    busy_cores: None, tmp_path: Path, two_namespace_project: Path
) -> None:
    """Fresh data dir and Prefect home, every core busy: the first run completes and exits 0,
    the closing example searches every namespace, and the documented dry run works after it."""
    env = clean_env(  # no DATABASE_URL: the embedded server starts on a new data dir
        DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        DBT_PROJECT_DIR=str(two_namespace_project),
        DBT_DOCS="false",
    )
    first = run([sys.executable, "flows/main.py"], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    assert "checks passed" in first.stdout
    assert 'Example search in products: "' in first.stdout
    assert 'Example search in reviews: "' in first.stdout
    assert "1. " in first.stdout.split("Example search in reviews")[1]

    # docs/indexing.md: `semantic-index index --dry-run` right after a run. It must read the
    # manifest the real transform wrote (<DATA_DIR>/dbt/target), not <project>/target.
    assert not (two_namespace_project / "target" / "manifest.json").exists()
    dry = run([sys.executable, "-m", "flows.cli", "index", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "products -> " in dry.stdout and "reviews -> " in dry.stdout
    assert "would embed 0" in dry.stdout  # nothing changed since the run


def test_prefect_server_start_timeout_says_what_to_do(tmp_path: Path) -> None:
    """When Prefect's temporary server is too slow, the error names the setting and the way
    out, and no traceback reaches the user. (Nothing of ours runs before the server starts.)"""
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1",
    )
    out = run([sys.executable, "flows/main.py"], env, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=1" in out.stderr
    assert "prefect server start" in out.stderr
    assert "Traceback" not in out.stderr


def test_generous_prefect_start_timeout_by_default() -> None:
    """The embedded defaults give Prefect's temporary server minutes, not 20 s; the user's
    own value wins."""
    code = (
        "import flows\n"
        "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s\n"
        "print(s.value())"
    )
    default = run([sys.executable, "-c", code], clean_env())
    assert default.returncode == 0, default.stderr
    assert int(default.stdout.strip()) >= 180
    mine = run(
        [sys.executable, "-c", code],
        clean_env(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="33"),
    )
    assert mine.stdout.strip() == "33"


@pytest.mark.parametrize("key", ["", "   "])
def test_empty_openai_key_fails_before_anything_runs(tmp_path: Path, key: str) -> None:
    """``EMBEDDING_PROVIDER=openai OPENAI_API_KEY=`` (compose's ``${OPENAI_API_KEY:-}``) is a
    settings error at once: no Prefect server, no ingest, no dbt, no SDK error, no retries."""
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        EMBEDDING_PROVIDER="openai",
        OPENAI_API_KEY=key,
    )
    out = run([sys.executable, "flows/main.py"], env, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY" in out.stderr
    assert "Traceback" not in out.stderr and "Missing credentials" not in out.stderr
    assert not (tmp_path / "data").exists()  # nothing started, nothing loaded
    assert not list((tmp_path / "prefect-home").glob("*.db"))  # no Prefect server started
