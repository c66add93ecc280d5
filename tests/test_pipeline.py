"""The whole data_pipeline flow on real components: embedded Postgres, dlt, dbt, Prefect, the
local model. One demo run per session (``demo_index``); tests that break things get their own
database."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from flows.main import PipelineSummary, data_pipeline
from tasks.errors import SourceError, TransformError
from tasks.ops.report import StageFailed
from tasks.search.searcher import search
from tasks.settings import get_settings
from tasks.transform.dbt import DbtResult
from tasks.warehouse import get_warehouse

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"


def _demo_counts() -> tuple[int, int]:
    with (DEMO / "items.csv").open() as f:
        items = sum(1 for _ in csv.DictReader(f))
    with (DEMO / "reviews.csv").open() as f:
        reviews = sum(1 for _ in csv.DictReader(f))
    return items, reviews


def _dbt_task_states(flow_name: str) -> dict[str, str | None]:
    """Task-run name -> state name of the latest run of flow ``flow_name`` (last attempt wins)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    async def read() -> dict[str, str | None]:
        async with get_client() as client:
            [latest] = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            )
        return {r.name: r.state.name for r in runs if r.state is not None}

    return asyncio.run(read())


def _counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return {
            table: conn.execute(f"select count(*) from {table}").fetchone()[0]  # type: ignore[index]
            for table in (
                "raw_data.items",
                "raw_data.reviews",
                "analytics.documents",
                "semantic_index.products",
            )
        }


@pytest.mark.integration
def test_demo_pipeline_loads_models_indexes_and_validates(demo_env: dict[str, object]) -> None:
    summary = demo_env["summary"]
    assert isinstance(summary, PipelineSummary)
    items, reviews = _demo_counts()
    assert summary.ingest[0].rows_by_table == {"items": items, "reviews": reviews}
    assert summary.dbt is not None and summary.dbt.tests_failed == 0
    assert summary.dbt.models_built >= 5 and summary.dbt.tests_passed >= 20
    [index] = summary.index
    assert index.documents == items and index.embedded == items and index.vectors_in_store == items
    assert summary.validation is not None and summary.validation.ok
    assert (get_settings().dbt_target_dir / "catalog.json").is_file()  # dbt docs generate ran
    text = summary.to_text()
    assert "rows loaded" in text and "tests passed" in text and "vectors stored" in text


@pytest.mark.integration
def test_paraphrase_finds_its_item_first(demo_env: dict[str, object]) -> None:
    # The labeled set's queries are paraphrases that share no phrase with the description.
    labeled = [json.loads(line) for line in (DEMO / "queries.jsonl").read_text().splitlines()]
    tent = next(q for q in labeled if "tent for two people" in q["query"])
    results = search(tent["query"], top_k=3)
    assert results[0].document_id in tent["relevant_ids"], results
    assert results[0].title and "Tent" in results[0].title

    unfiltered = [q for q in labeled if not q.get("filter")]
    first = sum(search(q["query"], top_k=1)[0].document_id in q["relevant_ids"] for q in unfiltered)
    assert first >= 0.8 * len(unfiltered)  # most paraphrases find their item first


@pytest.mark.integration
def test_rerun_changes_no_counts_and_embeds_nothing(demo_env: dict[str, object]) -> None:
    before = _counts(get_warehouse().conninfo)
    summary = data_pipeline()
    assert _counts(get_warehouse().conninfo) == before
    [index] = summary.index
    assert index.embedded == 0 and index.unchanged == index.chunks and index.deleted == 0


@pytest.mark.integration
def test_failing_dbt_test_fails_the_flow_and_indexes_nothing(
    env: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(DEMO, bad / "data" / "demo")
    reviews = (bad / "data" / "demo" / "reviews.csv").read_text().splitlines()
    header = reviews[0].split(",")
    first = next(csv.DictReader([reviews[0], reviews[1]]))
    first["rating"] = "7"  # accepted_values allows 1..5
    writer_rows = [reviews[0], ",".join(_quote(first[h]) for h in header), *reviews[2:]]
    (bad / "data" / "demo" / "reviews.csv").write_text("\n".join(writer_rows) + "\n")
    shutil.copy(REPO / "sources.yml", bad / "sources.yml")
    env.setenv("SOURCES_FILE", str(bad / "sources.yml"))
    get_settings.cache_clear()

    with pytest.raises(StageFailed) as err:
        data_pipeline()
    assert err.value.stage == "transform" and isinstance(err.value.__cause__, TransformError)
    assert "accepted_values" in str(err.value) and "rating" in str(err.value)
    with psycopg.connect(get_warehouse().conninfo) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
            ).fetchall()
        }
    assert "analytics.documents" not in tables  # nothing downstream of the failure was built
    assert not any(t.startswith("semantic_index.") for t in tables)

    # In Prefect, the failing test is a failed task run and no node dbt skipped shows as run.
    cause = err.value.__cause__
    assert isinstance(cause, TransformError) and isinstance(cause.result, DbtResult)
    outcome = cause.result
    skipped = {f"{n['type']} {n['name']}" for n in outcome.nodes if n["status"] == "skipped"}
    failed = {f"{n['type']} {n['name']}" for n in outcome.nodes if n["status"] == "fail"}
    assert skipped and failed
    states = _dbt_task_states("transform")
    assert {states[name] for name in failed if name in states} == {"Failed"}
    assert not [name for name in skipped if states.get(name) == "Completed"], states
    assert {states[name] for name in skipped if name in states} <= {"Skipped"}


@pytest.mark.integration
def test_empty_source_fails_clearly_and_loads_nothing(
    env: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> None:
    (tmp_path / "items.csv").write_text("item_id,name\n")
    (tmp_path / "sources.yml").write_text(
        "sources:\n  - name: shop\n    kind: csv\n    resources:\n"
        "      - {table: items, path: items.csv, primary_key: item_id}\n"
    )
    env.setenv("SOURCES_FILE", str(tmp_path / "sources.yml"))
    get_settings.cache_clear()
    with pytest.raises(StageFailed) as err:
        data_pipeline()
    assert err.value.stage == "ingest" and isinstance(err.value.__cause__, SourceError)
    assert re.search(r"no (data )?rows", str(err.value)) and "items" in str(err.value)
    with psycopg.connect(get_warehouse().conninfo) as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace").fetchall()}
    assert "raw_data" not in schemas


def _quote(value: str | None) -> str:
    value = value or ""
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n') else value


@pytest.mark.integration
def test_transform_mirrors_each_dbt_node_once(demo_env: dict[str, object]) -> None:
    """One Prefect task run per dbt node per build: ``dbt docs generate`` (on by default)
    compiles every node again and must not show each of them a second time."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.transform import transform

    state = transform(return_state=True)
    result = state.result()
    assert (get_settings().dbt_target_dir / "catalog.json").is_file()  # docs were generated

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None

    async def task_run_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return [r.name for r in runs]

    names = asyncio.run(task_run_names())
    dbt_names = [n for n in names if n.split(" ", 1)[0] in {"model", "test", "seed", "snapshot"}]
    assert len(dbt_names) == len(set(dbt_names)), sorted(dbt_names)
    assert len(dbt_names) == len(result.nodes)
