"""A load killed with SIGKILL mid-way is recovered by the next run: no loss, no duplicates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import REPO
from tests.sources.conftest import TOKEN, Api, completed_count, ingest, write_sources
from tests.sources.test_csv import HEADER, csv_sources, rows
from tests.sources.test_rest_api import PAGINATORS, api_sources

CHILD = """
from tasks.ingest.load import ingest_source
from tasks.settings import get_settings
from tasks.ingest.sources import load_sources_file
from tasks.warehouse import get_warehouse
import sys

settings = get_settings()
parsed = load_sources_file(settings.sources_file)
(config,) = parsed.get([sys.argv[1]])
ingest_source(config, parsed.base_dir, settings, get_warehouse(settings))
"""


def start_child(source: str) -> subprocess.Popen[bytes]:
    """Run one ingest in a new process with the test's environment."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, source],
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition: object, child: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while not condition():  # type: ignore[operator]
        if child.poll() is not None:
            raise AssertionError(f"child exited ({child.returncode}) before {what}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL


def kill_when_blocked(database_url: str, blocking_sql: str, what: str) -> None:
    """Run ``blocking_sql`` in an open transaction, start an ingest of source ``files``, SIGKILL
    it once it waits on that lock inside Postgres, then roll the blocker back."""
    params = conninfo_to_dict(database_url)
    with psycopg.connect(**params) as blocker:  # type: ignore[arg-type]
        blocker.execute(blocking_sql)
        child = start_child("files")
        with psycopg.connect(**params, autocommit=True) as monitor:  # type: ignore[arg-type]
            wait_for(
                lambda: (
                    monitor.execute(
                        "select count(*) from pg_stat_activity where datname = current_database() "
                        "and wait_event_type = 'Lock'"
                    ).fetchone()[0]  # type: ignore[index]
                    > 0
                ),
                child,
                what,
            )
            kill(child)
        blocker.rollback()


def test_killed_during_extract_then_rerun(
    api: Api, env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    sources = write_sources(tmp_path, api_sources(api, "page_number", PAGINATORS["page_number"]))
    env.setenv("SOURCES_FILE", str(sources))
    api.block_page = 3  # the child hangs on page 3, after two pages were extracted

    child = start_child("shop")
    wait_for(
        lambda: any(r.query.get("page") == "3" for r in api.server.hits("/page_number")),
        child,
        "page 3",
    )
    kill(child)
    api.block_page = None
    api.release.set()

    api.add_items(8, 3, "2024-03-01T00:00:00Z")  # new data for the next run
    for _ in range(2):
        ingest(env, sources, "shop")
    assert completed_count(database_url, "items", "id") == (10, 10) == (len(api.items),) * 2


def test_killed_while_loading_then_rerun(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "items.csv"
    data.write_text(HEADER + rows(1, 10))
    sources = write_sources(tmp_path, csv_sources("items.csv"))
    env.setenv("SOURCES_FILE", str(sources))
    assert ingest(env, sources, "files").rows_by_table == {"items": 10}

    data.write_text(HEADER + rows(1, 10, price="7.0") + rows(11, 5))
    os.utime(data, ns=(10**9, 10**9))
    # Hold the table so the child's load blocks inside Postgres, then kill it there.
    kill_when_blocked(
        database_url,
        "lock table raw_data.items in access exclusive mode",
        "the child's load to block on the table lock",
    )

    data.write_text(HEADER + rows(1, 10, price="8.0") + rows(11, 10))  # more new data
    os.utime(data, ns=(2 * 10**9, 2 * 10**9))
    result = ingest(env, sources, "files")
    # The kill interrupted a started load job (the merge, waiting on the lock): resuming could
    # run it twice, so the package is discarded and the file read again.
    assert not result.recovered_pending and len(result.discarded_packages) == 1
    assert result.rows_by_table == {"items": 20}
    ingest(env, sources, "files")
    assert completed_count(database_url, "items", "id") == (20, 20)
    assert query_prices(database_url) == {8.0}


def query_prices(database_url: str) -> set[float]:
    from tests.sources.conftest import query

    return {r[0] for r in query(database_url, "select price from raw_data.items where id <= 10")}


def test_first_load_killed_after_extract_then_rerun(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """The very first load into a new dataset (dlt can drop such a package: see NOTES)."""
    data = tmp_path / "items.csv"
    data.write_text(HEADER + rows(1, 12))
    sources = write_sources(tmp_path, csv_sources("items.csv"))
    env.setenv("SOURCES_FILE", str(sources))
    # An uncommitted CREATE SCHEMA makes the child's own CREATE SCHEMA wait: the child has
    # extracted and normalized everything and is starting its first load.
    kill_when_blocked(database_url, "create schema raw_data", "the child's first load to block")

    data.write_text(HEADER + rows(1, 15))
    os.utime(data, ns=(10**9, 10**9))
    first = ingest(env, sources, "files")
    second = ingest(env, sources, "files")
    assert first.recovered_pending
    assert second.rows_by_table == {}
    assert completed_count(database_url, "items", "id") == (15, 15)


def test_a_working_directory_missing_its_storage_folders_is_rebuilt_from_the_warehouse(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """What the random-kill test found: a kill while dlt was making its storage folders leaves
    a pipeline with pending data but no ``load/normalized`` folder; the next run must not die
    listing it (FileNotFoundError), but start over from the warehouse's state, losing nothing."""
    from tasks.settings import get_settings

    data = tmp_path / "items.csv"
    data.write_text(HEADER + rows(1, 12))
    sources = write_sources(tmp_path, csv_sources("items.csv"))
    env.setenv("SOURCES_FILE", str(sources))
    kill_when_blocked(database_url, "create schema raw_data", "the child's first load to block")
    working = get_settings().resolved_data_dir / "dlt" / "ingest_files"
    normalized = working / "load" / "normalized"
    assert normalized.is_dir()
    shutil.rmtree(normalized)

    data.write_text(HEADER + rows(1, 15))
    os.utime(data, ns=(10**9, 10**9))
    first = ingest(env, sources, "files")
    second = ingest(env, sources, "files")
    assert not first.recovered_pending
    assert second.rows_by_table == {}
    assert completed_count(database_url, "items", "id") == (15, 15)


EXTRACT_ONLY = """
from tasks.ingest.load import make_pipeline
from tasks.ingest.sources import build_source, load_sources_file
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse

settings = get_settings()
parsed = load_sources_file(settings.sources_file)
(config,) = parsed.get(["files"])
make_pipeline("files", settings, get_warehouse(settings)).extract(
    build_source(config, parsed.base_dir, frozenset({"items"}))
)
"""


def test_a_first_package_extracted_without_its_schema_is_discarded_not_loaded_twice(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """What the random-kill test found: a first run killed after dlt committed its extracted
    package but before it saved the source's schema. dlt's ``normalize()`` then does nothing
    (no schema), so the package stayed pending, the next run took the table for empty and
    both packages were appended: every row twice. The package must be discarded instead."""
    from tasks.settings import get_settings

    data = tmp_path / "items.csv"
    data.write_text(HEADER + rows(1, 12))
    sources = write_sources(tmp_path, csv_sources("items.csv"))
    env.setenv("SOURCES_FILE", str(sources))
    child = subprocess.run(
        [sys.executable, "-c", EXTRACT_ONLY],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    # Undo what dlt saves after committing the package: the schema file and its name in the
    # local state (the killed run's state.json had "default_schema_name": null).
    working = get_settings().resolved_data_dir / "dlt" / "ingest_files"
    saved = list((working / "schemas").glob("*.schema.json"))
    assert saved, "the child saved no schema to remove"
    for path in saved:
        path.unlink()
    state = json.loads((working / "state.json").read_text())
    state.update(default_schema_name=None, schema_names=[])
    (working / "state.json").write_text(json.dumps(state))

    first = ingest(env, sources, "files")
    second = ingest(env, sources, "files")
    assert not first.recovered_pending and first.discarded_packages
    assert second.rows_by_table == {}
    assert completed_count(database_url, "items", "id") == (12, 12)
