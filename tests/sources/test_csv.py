"""CSV kind: local files, globs and URLs; incremental by file; contracts; malformed files."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tasks.errors import SourceError
from tests.conftest import REPO
from tests.sources.conftest import completed_count, ingest, query, write_sources
from tests.sources.servers import LocalServer

HEADER = "id,name,price,updated_at\n"


def rows(start: int, count: int, price: str | None = None) -> str:
    return "".join(
        f"{i},name {i},{price or i * 2.5},2024-01-0{1 + i % 9} 10:00:00\n"
        for i in range(start, start + count)
    )


def csv_sources(path: str, contract: str = "evolve", extra: str = "") -> str:
    return f"""
sources:
  - name: files
    kind: csv
    contract: {contract}
    allow_private_addresses: true
    http: {{backoff_s: 0.01, max_attempts: 2}}
    resources:
      - table: items
        path: "{path}"
        primary_key: id
        columns: {{id: bigint, price: double, updated_at: timestamp}}
{extra}"""


def test_demo_sources_file_loads_twice(env: pytest.MonkeyPatch, database_url: str) -> None:
    sources = REPO / "sources.yml"
    first = ingest(env, sources, "demo")
    second = ingest(env, sources, "demo")

    assert first.rows_by_table["items"] > 0 and first.rows_by_table["reviews"] > 0
    assert second.rows_by_table == {}  # unchanged files are not read again
    items = first.rows_by_table["items"]
    assert completed_count(database_url, "items", "item_id") == (items, items)
    ((price_type,),) = query(
        database_url,
        "select data_type from information_schema.columns "
        "where table_schema = 'raw_data' and table_name = 'items' and column_name = 'price'",
    )
    assert price_type == "double precision"
    ((dlt_ids, no_load_id),) = query(
        database_url,
        "select count(distinct _dlt_id), count(*) filter (where _dlt_load_id is null) "
        "from raw_data.items",
    )
    assert (dlt_ids, no_load_id) == (items, 0)  # lineage columns on the Arrow path too


def test_glob_and_incremental_by_file(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text(HEADER + rows(1, 5))
    (data / "b.csv").write_text(HEADER + rows(6, 5))
    sources = write_sources(tmp_path, csv_sources("in/*.csv"))

    assert ingest(env, sources, "files").rows_by_table == {"items": 10}
    assert ingest(env, sources, "files").rows_by_table == {}  # nothing changed: nothing read

    (data / "b.csv").write_text(HEADER + rows(6, 5, price="9.5") + rows(11, 2))
    os.utime(data / "b.csv", ns=(1, 1))  # a new mtime even on coarse clocks
    third = ingest(env, sources, "files")

    assert third.rows_by_table == {"items": 7}  # only b.csv was re-read
    assert completed_count(database_url, "items", "id") == (12, 12)
    assert query(database_url, "select price from raw_data.items where id = 6") == [(9.5,)]


def test_url_incremental_by_etag(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    file_server: tuple[LocalServer, Path],
) -> None:
    server, root = file_server
    (root / "items.csv").write_text(HEADER + rows(1, 4))
    sources = write_sources(tmp_path, csv_sources(f"{server.url}/items.csv"))

    assert ingest(env, sources, "files").rows_by_table == {"items": 4}
    assert ingest(env, sources, "files").rows_by_table == {}
    second = server.hits("/items.csv")[1]
    assert second.headers["if-none-match"].startswith('"')  # conditional request -> 304

    (root / "items.csv").write_text(HEADER + rows(1, 6))
    assert ingest(env, sources, "files").rows_by_table == {"items": 6}
    assert completed_count(database_url, "items", "id") == (6, 6)


def test_options_delimiter_encoding_no_header(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "latin.csv").write_bytes(
        "junk line\n1;Crème brûlée;3,5\n2;Café;4\n".replace(",5", ".5").encode("latin-1")
    )
    text = """
sources:
  - name: files
    kind: csv
    resources:
      - table: desserts
        path: latin.csv
        primary_key: id
        header: false
        skip_rows: 1
        column_names: [id, name, price]
        delimiter: ";"
        encoding: latin-1
        columns: {id: bigint, price: double}
"""
    sources = write_sources(tmp_path, text)
    for _ in range(2):
        ingest(env, sources, "files")
    assert query(database_url, "select id, name, price from raw_data.desserts order by id") == [
        (1, "Crème brûlée", 3.5),
        (2, "Café", 4.0),
    ]


def test_truncated_csv_fails_and_loads_nothing(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "t.csv").write_text(HEADER + rows(1, 3) + '4,"unterminated,1.0')
    sources = write_sources(tmp_path, csv_sources("t.csv"))
    with pytest.raises(SourceError, match=r"t\.csv: malformed CSV"):
        ingest(env, sources, "files")
    assert query(
        database_url, "select count(*) from information_schema.tables where table_name = 'items'"
    ) == [(0,)]

    (tmp_path / "t.csv").write_text(HEADER + rows(1, 3) + "4,cut")  # too few cells
    with pytest.raises(SourceError, match="malformed CSV"):
        ingest(env, sources, "files")


def test_non_utf8_bytes_fail_naming_the_encoding(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes((HEADER + "1,caf\xe9,1.0,2024-01-01\n").encode("latin-1"))
    sources = write_sources(tmp_path, csv_sources("bad.csv"))
    with pytest.raises(SourceError, match="not valid utf-8.*encoding"):
        ingest(env, sources, "files")


BAD_ROWS = {
    # what breaks data row 6: (its bytes, the message's words for it)
    "too few cells": (b"6,cut\n", "malformed CSV"),
    "too many cells": (b"6,a,1.0,2024-01-01,extra\n", "malformed CSV"),
    "unterminated quote": (b'6,"unterminated,1.0\n', "malformed CSV"),
    "not utf-8": ("6,caf\xe9,1.0,2024-01-01\n".encode("latin-1"), "not valid utf-8"),
}


@pytest.mark.parametrize("where", ["file", "url"])
@pytest.mark.parametrize("fault", list(BAD_ROWS))
def test_bad_row_is_named_by_data_row_and_byte_offset(
    fault: str,
    where: str,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    file_server: tuple[LocalServer, Path],
) -> None:
    """The first bad row is data row 6 (after a quoted multi-line cell in row 3): the message
    says so, with the byte offset where that row starts, for local files and URLs alike."""
    server, root = file_server
    bad, words = BAD_ROWS[fault]
    good = (HEADER + rows(1, 2) + '3,"two\nlines",7.5,2024-01-01\n' + rows(4, 2)).encode()
    tail = rows(7, 3).encode()
    folder = root if where == "url" else tmp_path
    (folder / "t.csv").write_bytes(good + bad + tail)
    path = f"{server.url}/t.csv" if where == "url" else "t.csv"
    sources = write_sources(tmp_path, csv_sources(path))
    with pytest.raises(SourceError, match=words) as info:
        ingest(env, sources, "files")
    assert f"data row 6 (line 8, byte offset {len(good)})" in str(info.value)


def test_header_only_file_is_an_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text(HEADER)
    sources = write_sources(tmp_path, csv_sources("empty.csv"))
    with pytest.raises(SourceError, match="no data rows"):
        ingest(env, sources, "files")


# -------------------------------------------------------------------------------- contracts


def test_freeze_fails_on_bad_value_naming_column_and_value(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "f.csv").write_text(HEADER + rows(1, 3) + "4,four,not-a-price,2024-01-01\n")
    sources = write_sources(tmp_path, csv_sources("f.csv", contract="freeze"))
    with pytest.raises(
        SourceError, match=r"column 'price': value 'not-a-price' is not a valid double"
    ):
        ingest(env, sources, "files")
    # the failed run left no state: fixing the file loads it
    (tmp_path / "f.csv").write_text(HEADER + rows(1, 4))
    assert ingest(env, sources, "files").rows_by_table == {"items": 4}


def test_freeze_fails_on_new_column(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text(HEADER + rows(1, 3))
    sources = write_sources(tmp_path, csv_sources("f.csv", contract="freeze"))
    assert ingest(env, sources, "files").rows_by_table == {"items": 3}
    (tmp_path / "f.csv").write_text("id,name,price,updated_at,colour\n1,a,1.0,2024-01-01,red\n")
    with pytest.raises(SourceError, match="colour"):
        ingest(env, sources, "files")


def test_evolve_adds_new_column_but_rejects_bad_value(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "e.csv").write_text(HEADER + rows(1, 3))
    sources = write_sources(tmp_path, csv_sources("e.csv"))
    ingest(env, sources, "files")
    (tmp_path / "e.csv").write_text("id,name,price,updated_at,colour\n1,a,1.0,2024-01-01,red\n")
    assert ingest(env, sources, "files").rows_by_table == {"items": 1}
    assert query(database_url, "select colour from raw_data.items where id = 1") == [("red",)]
    (tmp_path / "e.csv").write_text(HEADER + "2,b,cheap,2024-01-01\n")
    with pytest.raises(SourceError, match="'cheap'"):
        ingest(env, sources, "files")


def test_quarantine_diverts_bad_rows_with_reason_and_raw_record(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    body = (
        HEADER
        + rows(1, 3)
        + "4,four,n/a,2024-01-01\n5,five,1.0,yesterday-ish\n,no id,1.0,2024-01-01\n"
        + rows(6, 2)
    )
    (tmp_path / "q.csv").write_text(body)
    sources = write_sources(tmp_path, csv_sources("q.csv", contract="quarantine"))
    for _ in range(2):
        ingest(env, sources, "files")
        os.utime(tmp_path / "q.csv", ns=(2, 2))  # force a re-read: rejects must not duplicate rows

    assert completed_count(database_url, "items", "id") == (5, 5)
    rejected = query(
        database_url,
        "select reason, raw_record, origin from raw_data.items__rejected order by reason",
    )
    assert len(rejected) == 6  # 3 bad rows x 2 runs: the rejected table is an append-only log
    reasons = {r[0] for r in rejected}
    assert reasons == {
        "column 'price': value 'n/a' is not a valid double",
        "column 'updated_at': value 'yesterday-ish' is not a valid timestamp",
        "primary key ['id'] is empty",
    }
    assert any('"id": "4"' in r[1] and "n/a" in r[1] for r in rejected)
    assert all("q.csv, data row" in r[2] for r in rejected)


def test_replace_reads_every_file_every_run(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """dlt empties a `replace` table when a run yields nothing, so files are never skipped."""
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text(HEADER + rows(1, 3))
    (data / "b.csv").write_text(HEADER + rows(4, 3))
    text = csv_sources("in/*.csv").replace("primary_key: id", "write_disposition: replace")
    sources = write_sources(tmp_path, text)

    for _ in range(2):
        assert ingest(env, sources, "files").rows_by_table == {"items": 6}
        assert completed_count(database_url, "items", "id") == (6, 6)
    (data / "b.csv").write_text(HEADER + rows(4, 2))
    os.utime(data / "b.csv", ns=(1, 1))
    assert ingest(env, sources, "files").rows_by_table == {"items": 5}
    assert completed_count(database_url, "items", "id") == (5, 5)


def test_missing_url_fails_fast_with_url_and_status(
    env: pytest.MonkeyPatch, tmp_path: Path, file_server: tuple[LocalServer, Path]
) -> None:
    server, _ = file_server
    sources = write_sources(tmp_path, csv_sources(f"{server.url}/nope.csv"))
    with pytest.raises(SourceError, match=r"GET http://127\.0\.0\.1:\d+/nope\.csv: HTTP 404"):
        ingest(env, sources, "files")
    assert len(server.hits("/nope.csv")) == 1  # a 404 is not retried


def _pipeline(name: str) -> Any:
    """The dlt pipeline the ingest task used for source ``name`` (attached from its state)."""
    import dlt

    from tasks.settings import get_settings

    return dlt.attach(
        pipeline_name=f"ingest_{name}", pipelines_dir=str(get_settings().resolved_data_dir / "dlt")
    )


def _items_file_formats(load_id: str) -> set[str]:
    """Formats of the files load ``load_id`` of source ``files`` loaded into ``items``."""
    package = _pipeline("files").get_load_package_info(load_id)
    return {
        job.job_file_info.file_format
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name == "items"
    }


def test_arrow_batches_load_as_parquet_through_adbc(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """With ADBC's driver installed (a dependency) files go from extract to load unchanged."""
    (tmp_path / "a.csv").write_text(HEADER + rows(1, 5))
    sources = write_sources(tmp_path, csv_sources("a.csv"))
    first = ingest(env, sources, "files")
    loaded = _pipeline("files").get_load_package_info(first.load_ids[0])
    assert loaded.jobs["completed_jobs"] == []  # loaded files are deleted by default

    env.setenv("LOAD__DELETE_COMPLETED_JOBS", "false")  # keep them to look at their format
    os.utime(tmp_path / "a.csv", ns=(1, 1))
    result = ingest(env, sources, "files")

    formats = _items_file_formats(result.load_ids[0])
    assert formats == {"parquet", "sql"}  # the rows, then the merge from the staging table
    assert query(
        database_url, "select price, updated_at::text from raw_data.items where id = 2"
    ) == [(5.0, "2024-01-03 10:00:00+00")]


def _merge_write(table: str = "items") -> tuple[str, str | None, bool]:
    """How the last load wrote ``table``: disposition, merge strategy, dlt's dedup skipped."""
    hints = _pipeline("files").default_schema.get_table(table)
    merged = hints["write_disposition"] == "merge"
    return (
        hints["write_disposition"],
        hints.get("x-merge-strategy") if merged else None,
        bool(hints.get("x-stage-data-deduplicated")),
    )


def _staged(database_url: str) -> bool:
    """Whether a load went through dlt's staging table for ``items``."""
    return query(database_url, "select to_regclass('raw_data_staging.items') is not null") == [
        (True,)
    ]


def test_merge_appends_into_an_empty_table_and_merges_by_key_otherwise(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each merge load is written the cheapest way its keys and the table allow, same result."""
    caplog.set_level("INFO", logger="tasks.ingest.sources.csv_files.helpers")
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text(HEADER + rows(1, 5))
    sources = write_sources(tmp_path, csv_sources("in/*.csv"))

    # Empty table, unique keys: an append, no staging table at all.
    ingest(env, sources, "files")
    assert _merge_write() == ("append", None, True)
    assert not _staged(database_url)
    assert completed_count(database_url, "items", "id") == (5, 5)
    assert "empty and this load's keys are unique: loaded by append" in caplog.text

    # Key 3 twice in one file and key 5 again in a second file: dlt must de-duplicate this load.
    (data / "a.csv").write_text(HEADER + rows(1, 5) + rows(3, 1, price="7.5"))
    (data / "b.csv").write_text(HEADER + rows(5, 2))
    os.utime(data / "a.csv", ns=(1, 1))
    assert ingest(env, sources, "files").rows_by_table == {"items": 8}
    assert _merge_write() == ("merge", "delete-insert", False)
    assert completed_count(database_url, "items", "id") == (6, 6)
    assert "this load repeats a key: merged by delete-insert, de-duplicated by dlt" in caplog.text

    # Unique keys again, over rows already in the table: merged, not appended.
    (data / "b.csv").write_text(HEADER + rows(5, 3, price="1.5"))
    os.utime(data / "b.csv", ns=(2, 2))
    assert ingest(env, sources, "files").rows_by_table == {"items": 3}
    assert _merge_write() == ("merge", "delete-insert", True)
    assert completed_count(database_url, "items", "id") == (7, 7)
    assert query(database_url, "select count(*) from raw_data.items where price = 1.5") == [(3,)]

    # A rerun with nothing new loads nothing and changes nothing.
    assert ingest(env, sources, "files").rows_by_table == {}
    assert completed_count(database_url, "items", "id") == (7, 7)

    # Emptied in the warehouse: the next load of unique keys is an append again.
    with psycopg.connect(**conninfo_to_dict(database_url)) as conn:  # type: ignore[arg-type]
        conn.execute("truncate raw_data.items")
    os.utime(data / "a.csv", ns=(3, 3))
    os.utime(data / "b.csv", ns=(3, 3))
    (data / "a.csv").write_text(HEADER + rows(1, 4))
    assert ingest(env, sources, "files").rows_by_table == {"items": 7}
    assert _merge_write() == ("append", None, True)
    assert completed_count(database_url, "items", "id") == (7, 7)


def test_a_locked_empty_table_counts_as_not_empty_without_waiting(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The emptiness check never queues behind a lock: when in doubt, the load is a merge."""
    from tasks.ingest.load import empty_tables
    from tasks.ingest.sources import load_sources_file
    from tasks.settings import get_settings
    from tasks.warehouse import get_warehouse

    (tmp_path / "a.csv").write_text(HEADER + rows(1, 3))
    sources = write_sources(tmp_path, csv_sources("a.csv"))
    (config,) = load_sources_file(sources).get(["files"])
    settings = get_settings()
    warehouse = get_warehouse(settings)
    assert empty_tables(config, settings, warehouse) == {"items"}  # no table yet
    ingest(env, sources, "files")
    assert empty_tables(config, settings, warehouse) == frozenset()  # rows in it

    params = conninfo_to_dict(database_url)
    with psycopg.connect(**params) as blocker:  # type: ignore[arg-type]
        blocker.execute("truncate raw_data.items")  # empty, and locked until the rollback
        with caplog.at_level("INFO", logger="tasks.ingest.load"):
            assert empty_tables(config, settings, warehouse) == frozenset()
        blocker.rollback()
    assert "table items is locked by another session; its load is a merge" in caplog.text


def test_timestamps_with_and_without_offsets(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """Naive text is UTC (as dlt assumes); text with an offset keeps its instant."""
    (tmp_path / "naive.csv").write_text(HEADER + "1,a,1,2024-05-01 12:00:00\n")
    (tmp_path / "offset.csv").write_text(HEADER + "2,b,1,2024-05-01T12:00:00+02:00\n")
    sources = write_sources(tmp_path, csv_sources("*.csv"))
    ingest(env, sources, "files")
    assert query(
        database_url, "select id, updated_at at time zone 'UTC' from raw_data.items order by id"
    ) == [(1, datetime(2024, 5, 1, 12, 0)), (2, datetime(2024, 5, 1, 10, 0))]


def test_a_vanished_file_is_reported_and_reread_when_it_returns(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text(HEADER + rows(1, 2))
    (data / "b.csv").write_text(HEADER + rows(3, 2))
    sources = write_sources(tmp_path, csv_sources("in/*.csv"))
    ingest(env, sources, "files")

    saved, stat = (data / "b.csv").read_text(), (data / "b.csv").stat()
    (data / "b.csv").unlink()
    with caplog.at_level("WARNING", logger="tasks.ingest.sources.csv_files.helpers"):
        assert ingest(env, sources, "files").rows_by_table == {}
    assert f"{data / 'b.csv'} was loaded before and is gone; its rows stay" in caplog.text
    assert completed_count(database_url, "items", "id") == (4, 4)  # merge keeps them, as said

    (data / "b.csv").write_text(saved)  # restored as it was (say `cp -p`): read again
    os.utime(data / "b.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ingest(env, sources, "files").rows_by_table == {"items": 2}
    assert completed_count(database_url, "items", "id") == (4, 4)


def test_without_adbc_arrow_batches_load_as_csv(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """The fallback when ADBC's driver is missing: csv files (dlt would use INSERTs for parquet)."""
    import dlt.destinations._adbc_jobs as adbc_jobs

    from tasks.ingest.sources.csv_files.helpers import load_file_format

    env.setattr(adbc_jobs, "has_adbc_driver", lambda driver: (False, "not installed"))
    load_file_format.cache_clear()
    try:
        env.setenv("LOAD__DELETE_COMPLETED_JOBS", "false")
        (tmp_path / "a.csv").write_text(HEADER + rows(1, 3))
        result = ingest(env, write_sources(tmp_path, csv_sources("a.csv")), "files")
    finally:
        load_file_format.cache_clear()

    formats = _items_file_formats(result.load_ids[0])
    assert formats == {"csv"}  # a first load of unique keys: appended, no merge job
    assert completed_count(database_url, "items", "id") == (3, 3)


def test_every_declared_type_loads_through_the_fast_path(
    env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "t.csv").write_text(
        "id,amount,flag,day,at,doc,blob,note\n"
        '1,12.345678901,true,2024-02-29,13:45:10,"{""a"": [1, 2]}",aGVsbG8=,plain\n'
        "2,,false,,,,,\n"
    )
    text = """
sources:
  - name: files
    kind: csv
    resources:
      - table: typed
        path: t.csv
        primary_key: id
        columns: {id: bigint, amount: decimal, flag: bool, day: date, at: time, doc: json,
                  blob: binary}
"""
    ingest(env, write_sources(tmp_path, text), "files")
    types = dict(
        query(
            database_url,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_data' and table_name = 'typed'",
        )
    )
    assert {k: types[k] for k in ("id", "amount", "flag", "day", "at", "note")} == {
        "id": "bigint",
        "amount": "numeric",
        "flag": "boolean",
        "day": "date",
        "at": "time without time zone",
        "note": "character varying",
    }
    assert types["doc"] in ("json", "jsonb")
    assert types["blob"] == "bytea"  # the cell's bytes as they are (not base64-decoded)
    assert query(database_url, "select blob from raw_data.typed order by id") == [
        (b"aGVsbG8=",),
        (None,),
    ]
    rows = query(
        database_url,
        "select id, amount::text, flag, day::text, at::text, doc::text, note "
        "from raw_data.typed order by id",
    )
    assert rows[0] == (1, "12.345678901", True, "2024-02-29", "13:45:10", '{"a": [1, 2]}', "plain")
    assert rows[1] == (2, None, False, None, None, None, None)
