"""Two runs of the same source at once, in two real processes: the second waits for the first
(a PostgreSQL advisory lock keyed by the source), or fails naming the source and the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import REPO
from tests.sources.conftest import TOKEN, Api, completed_count, ingest, write_sources
from tests.sources.test_recovery import CHILD
from tests.sources.test_rest_api import PAGINATORS, api_sources


def start(source: str, **env: str) -> subprocess.Popen[str]:
    """One ingest of ``source`` in a new process (output kept for the assertions)."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, source],
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: object, what: str, *children: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not condition():  # type: ignore[operator]
        for child in children:
            if child.poll() is not None:
                raise AssertionError(f"a child exited ({child.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lock_waiters(database_url: str) -> int:
    """Sessions waiting on an advisory lock in the test database."""
    params = conninfo_to_dict(database_url)
    with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and wait_event_type = 'Lock' and wait_event = 'advisory'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def shop(api: Api, env: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    env.setenv("SOURCES__SHOP__TOKEN", TOKEN)
    text = api_sources(api, "page_number", PAGINATORS["page_number"])
    # The first run's blocked request must not time out (and retry) while the test looks on.
    sources = write_sources(tmp_path, text.replace("timeout_s: 2", "timeout_s: 300"))
    env.setenv("SOURCES_FILE", str(sources))
    api.block_page = 2  # the first run holds its lock while it waits for page 2
    return sources


def test_second_run_waits_for_the_first_then_both_succeed(
    shop: Path, api: Api, env: pytest.MonkeyPatch, database_url: str
) -> None:
    first = start("shop")
    wait_until(lambda: api.server.hits("/page_number"), "the first run's first page", first)
    second = start("shop", INGEST_LOCK_WAIT_S="300")
    wait_until(lambda: lock_waiters(database_url) == 1, "the second run to wait", first, second)
    assert [r.query.get("page") for r in api.server.hits("/page_number")] == ["1", "2"]

    api.block_page = None
    api.release.set()
    assert first.wait(120) == 0, first.communicate()[1][-2000:]
    assert second.wait(120) == 0, second.communicate()[1][-2000:]
    # The second run started only after the first had finished: it read every page itself.
    pages = [r.query.get("page") for r in api.server.hits("/page_number")]
    assert pages == ["1", "2", "3", "4"] * 2
    assert completed_count(database_url, "items", "id") == (7, 7)
    ingest(env, shop, "shop")
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_second_run_gives_up_naming_the_source_and_the_holder(
    shop: Path, api: Api, database_url: str
) -> None:
    first = start("shop")
    try:
        wait_until(
            lambda: len(api.server.hits("/page_number")) == 2, "the first run to block", first
        )
        second = start("shop", INGEST_LOCK_WAIT_S="0.5")
        assert second.wait(120) == 1
        err = second.communicate()[1]
        assert "SourceBusy: Source shop: another run is loading it" in err
        assert f"application_name 'ingest shop pid {first.pid} on " in err  # the holder
        assert "INGEST_LOCK_WAIT_S" in err
        assert len(api.server.hits("/page_number")) == 2  # the loser fetched nothing
    finally:
        api.block_page = None
        api.release.set()
    assert first.wait(120) == 0, first.communicate()[1][-2000:]
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_lock_holders_found_for_keys_of_either_sign(database_url: str) -> None:
    """pg_locks splits the 64-bit key in two oids: both signs of hashtext() must be matched."""
    from tasks.errors import SourceBusy
    from tasks.warehouse import advisory_lock

    params = conninfo_to_dict(database_url)
    signs = set()
    with (
        psycopg.connect(**params, autocommit=True, application_name="holder") as holder,  # type: ignore[arg-type]
        psycopg.connect(**params, autocommit=True) as other,  # type: ignore[arg-type]
    ):
        for key in ("ingest:raw_data:shop", "a", "b", "c", "d"):
            (value,) = holder.execute("select hashtext(%s)", (key,)).fetchone()  # type: ignore[misc]
            signs.add(value < 0)
            with (
                advisory_lock(holder, key, 0, SourceBusy),
                pytest.raises(SourceBusy, match="application_name 'holder'"),
                advisory_lock(other, key, 0.2, SourceBusy),
            ):
                pass
            with advisory_lock(other, key, 0, SourceBusy):  # released: free again
                pass
    assert signs == {True, False}
