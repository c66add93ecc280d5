"""Deployments on a real Prefect server, run by a real process worker against real PostgreSQL.

Heavy (one server, one worker, a handful of flow runs on 12 items): the session shares them.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.conftest import create_database
from tests.ops.conftest import BIN, N_ITEMS, REPO, Ops, run_ok

pytestmark = pytest.mark.integration


def head_commit() -> str:
    """The checkout's commit (``prefect deploy`` ran from it)."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


EXPECTED_DEPLOYMENTS = {
    ("data-pipeline", "daily"),
    ("ingest", "ingest-only"),
    ("transform", "transform-only"),
    ("index", "index-only"),
    ("rebuild-index", "rebuild-index"),
    ("index-doctor", "index-doctor"),
    ("backup", "backup"),
}


@pytest.fixture(scope="module")
def daily_runs(ops: Ops) -> list[dict[str, Any]]:
    """Two back-to-back triggers of the daily deployment, both waited for."""
    params = {"params": {"probe_query": "tent for backpacking", "sources": None}}
    first = ops.trigger("data-pipeline", "daily", parameters=params)
    second = ops.trigger("data-pipeline", "daily", parameters=params)
    runs = [ops.wait(first), ops.wait(second)]
    # Either may get the deployment's slot first: order them by when they ran.
    return sorted(runs, key=lambda r: r["start_time"] or "")


def test_deploy_all_created_every_deployment_with_its_limits(ops: Ops) -> None:
    with ops.server.client() as c:
        deployments = c.post("/deployments/filter", json={}).json()
        flows = {f["id"]: f["name"] for f in c.post("/flows/filter", json={}).json()}
    found = {(flows[d["flow_id"]], d["name"]): d for d in deployments}
    assert set(found) >= EXPECTED_DEPLOYMENTS
    daily = found[("data-pipeline", "daily")]
    assert daily["work_pool_name"] == "pipeline-process"
    assert "semantic-pipeline" in daily["tags"]
    assert daily["global_concurrency_limit"]["limit"] == 1
    assert daily["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    schedule = daily["schedules"][0]["schedule"]
    assert schedule["cron"] == "0 3 * * *"
    assert schedule["timezone"] == "Europe/Madrid"
    assert found[("backup", "backup")]["schedules"], "backup runs on a schedule"
    # prefect.yaml's build step: every deployment's version is the commit it was deployed from.
    assert {d["version"] for d in found.values()} == {head_commit()}


def test_daily_deployment_completes_with_report_artifacts(
    ops: Ops, daily_runs: list[dict[str, Any]]
) -> None:
    first, second = daily_runs
    assert first["state_type"] == "COMPLETED", first["state"]
    assert second["state_type"] == "COMPLETED", second["state"]

    arts = ops.artifacts(first["id"])
    assert {
        "pipeline-report",
        "pipeline-rows-loaded",
        "pipeline-dbt-nodes",
        "pipeline-index",
        "pipeline-validation",
        "pipeline-durations",
    } <= set(arts)
    rows = {(r["source"], r["table"]): r["rows"] for r in arts["pipeline-rows-loaded"]["data"]}
    assert rows == {("demo", "items"): N_ITEMS, ("demo", "reviews"): ops.small.reviews}
    index = arts["pipeline-index"]["data"]
    assert [(r["namespace"], r["documents"], r["vectors in store"]) for r in index] == [
        ("products", N_ITEMS, N_ITEMS)
    ]
    assert index[0]["embedded (new or changed)"] == N_ITEMS
    nodes = arts["pipeline-dbt-nodes"]["data"]
    assert nodes and all(n["status"] in {"success", "pass"} for n in nodes)
    assert any(n["type"] == "test" for n in nodes)
    assert all(check["passed"] for check in arts["pipeline-validation"]["data"])
    stages = [d["stage"] for d in arts["pipeline-durations"]["data"]]
    assert stages == ["ingest", "transform", "index", "validate"]
    assert "succeeded" in arts["pipeline-report"]["data"]
    versions = {r["field"]: r["value"] for r in arts["pipeline-versions"]["data"]}
    assert versions["git_commit"] == head_commit() and versions["dbt_manifest_hash"]
    assert versions["index_fingerprint"] == index[0]["fingerprint"]
    assert f"git_commit `{head_commit()}`" in arts["pipeline-report"]["data"]

    # The second run found nothing new to load or embed: re-runs are safe.
    again = ops.artifacts(second["id"])["pipeline-index"]["data"][0]
    assert again["embedded (new or changed)"] == 0
    assert again["unchanged"] == N_ITEMS
    assert again["vectors in store"] == N_ITEMS


def test_overlapping_triggers_do_not_run_concurrently(
    ops: Ops, daily_runs: list[dict[str, Any]]
) -> None:
    first, second = daily_runs
    # One of them had to wait for the deployment's single slot ...
    waited = [r for r in daily_runs if "AwaitingConcurrencySlot" in ops.states(r["id"])]
    assert waited, [ops.states(r["id"]) for r in daily_runs]
    # ... and their running intervals (server timestamps) do not intersect.
    a, b = sorted(daily_runs, key=lambda r: r["start_time"])
    assert a["end_time"] <= b["start_time"]


def test_rebuild_deployment_drops_and_reindexes(ops: Ops, daily_runs: list[dict[str, Any]]) -> None:
    with psycopg.connect(ops.database_url) as conn:
        [(before,)] = conn.execute("select min(written_at) from semantic_index.products").fetchall()
    run = ops.wait(ops.trigger("rebuild-index", "rebuild-index"))
    assert run["state_type"] == "COMPLETED", run["state"]
    with psycopg.connect(ops.database_url) as conn:
        [(count, oldest)] = conn.execute(
            "select count(*), min(written_at) from semantic_index.products"
        ).fetchall()
    assert count == N_ITEMS
    assert oldest > before  # every vector was written again


def test_stage_events_carry_counts(ops: Ops, daily_runs: list[dict[str, Any]]) -> None:
    with ops.server.client() as c:
        r = c.post(
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["pipeline."]},
                    "related": {
                        "resources_in_roles": [
                            [f"prefect.flow-run.{daily_runs[0]['id']}", "flow-run"]
                        ]
                    },
                    "occurred": {"since": daily_runs[0]["start_time"]},
                },
                "limit": 50,
            },
        )
        r.raise_for_status()
        events = {e["event"]: e for e in r.json()["events"]}
    assert {
        "pipeline.ingest.completed",
        "pipeline.transform.completed",
        "pipeline.index.completed",
        "pipeline.validate.completed",
    } <= set(events)
    assert events["pipeline.ingest.completed"]["payload"]["total_rows"] == (
        N_ITEMS + ops.small.reviews
    )
    for event in events.values():
        assert event["payload"]["versions"]["git_commit"] == head_commit(), event["event"]
    index_versions = events["pipeline.index.completed"]["payload"]["versions"]
    assert index_versions["index_fingerprint"] and index_versions["dbt_manifest_hash"]


@pytest.fixture(scope="module")
def failed_run(ops: Ops, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The daily deployment on data whose review rating of 7 fails a dbt test (own database)."""
    env = {
        "SOURCES_FILE": str(ops.small.bad),
        "DATABASE_URL": create_database(ops.pg_host),
        "DATA_DIR": str(tmp_path_factory.mktemp("failing-data")),
    }
    run_id = ops.trigger("data-pipeline", "daily", job_variables={"env": env})
    return ops.wait(run_id)


def test_failing_run_alerts_the_webhook_with_stage_error_and_link(
    ops: Ops, failed_run: dict[str, Any]
) -> None:
    assert failed_run["state_type"] == "FAILED"
    message = failed_run["state"]["message"]
    # transform retried with `dbt retry` (its second attempt) and still failed.
    assert "Stage 'transform' failed" in message
    assert "dbt retry failed" in message

    hits = ops.webhook.wait_for(lambda r: failed_run["id"] in r["json"].get("text", ""))
    assert hits, f"no alert received; got {ops.webhook.requests}"
    text = hits[0]["json"]["text"]
    assert "Flow: data-pipeline" in text
    assert "Deployment: daily" in text
    assert "Stage 'transform' failed" in text
    assert "accepted_values" in text and "rating" in text
    assert f"/runs/flow-run/{failed_run['id']}" in text
    # One alert per failure: the failed transform subflow (not a deployment run) sends none.
    assert len(hits) == 1
    assert not [r for r in ops.webhook.requests if "Flow: transform" in r["json"].get("text", "")]
    # The URL (with its secret token) came from the block's secret field.
    assert hits[0]["path"] == f"/hook/{ops.canaries['ALERT_WEBHOOK_URL']}"

    # The report was still published, naming the failed stage.
    arts = ops.artifacts(failed_run["id"])
    assert "Failed stage:** `transform`" in arts["pipeline-report"]["data"]
    # ... and the dbt-nodes table, so the failed build shows which node failed.
    nodes = arts["pipeline-dbt-nodes"]["data"]
    failed = [n for n in nodes if n["status"] in {"fail", "error"}]
    assert failed and all(n["type"] == "test" for n in failed)
    assert any("accepted_values" in n["node"] and "rating" in n["node"] for n in failed)


def _table_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            """select table_schema, table_name from information_schema.tables
               where table_type = 'BASE TABLE'
                 and table_schema not in ('pg_catalog', 'information_schema')
               order by 1, 2"""
        ).fetchall()
        counts: dict[str, int] = {}
        for s, t in tables:
            [(n,)] = conn.execute(f'select count(*) from "{s}"."{t}"').fetchall()
            counts[f"{s}.{t}"] = n
        return counts


def _vectors(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select id, content_hash, md5(embedding::text) from semantic_index.products order by id"
        ).fetchall()


def test_backup_deployment_dump_restores_into_a_fresh_database(
    ops: Ops, daily_runs: list[dict[str, Any]]
) -> None:
    first = ops.wait(ops.trigger("backup", "backup"))
    second = ops.wait(ops.trigger("backup", "backup"))
    assert [r["state_type"] for r in (first, second)] == ["COMPLETED"] * 2
    backups = sorted((ops.data_dir / "backups").glob("warehouse-*.dump"))
    assert len(backups) == 1, backups  # BACKUP_KEEP=1: the first dump was pruned

    fresh = create_database(ops.pg_host)
    env = {**ops.worker_env, "DATABASE_URL": fresh}
    run_ok([str(BIN / "python"), "-m", "flows.cli", "restore", str(backups[-1])], env, 300)

    source = _table_counts(ops.database_url)
    copy = _table_counts(fresh)
    assert source == copy
    assert source["raw_data.items"] >= N_ITEMS
    assert source["semantic_index.products"] == N_ITEMS
    ledger = [table for table in source if table.startswith("index_state.")]
    assert ledger, "the indexing ledger is part of the dump"
    assert _vectors(fresh) == _vectors(ops.database_url)


def _all_pages(ops: Ops, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    with ops.server.client() as c:
        while True:
            r = c.post(path, json={**body, "limit": 200, "offset": len(items)})
            r.raise_for_status()
            page = r.json()
            items.extend(page)
            if len(page) < 200:
                return items


def test_no_secret_reaches_logs_artifacts_or_process_output(
    ops: Ops, daily_runs: list[dict[str, Any]], failed_run: dict[str, Any]
) -> None:
    logs = _all_pages(ops, "/logs/filter", {})
    artifacts = _all_pages(ops, "/artifacts/filter", {})
    # The runs did log and report (so the search below looked at real output).
    assert len(logs) > 50
    assert any(a.get("key") == "pipeline-report" for a in artifacts)
    haystacks = {
        "logs": "\n".join(entry["message"] for entry in logs),
        "artifacts": "\n".join(str(a.get("data")) + str(a.get("description")) for a in artifacts),
        "worker output": ops.worker_log.read_text(errors="replace"),
        "server output": ops.server.log.read_text(errors="replace"),
        "deploy output": ops.deploy_output,
        "alert messages": str([r["json"] for r in ops.webhook.requests]),
    }
    for setting, canary in ops.canaries.items():
        for where, text in haystacks.items():
            assert canary not in text, f"{setting} leaked into {where}"


def test_a_run_over_its_time_limit_alerts_the_webhook(ops: Ops) -> None:
    """The proactive "run too long" automation fires for a run past its limit. Same automation
    as `make setup-prefect` creates, with a 10-second limit (the least Prefect allows; a daily
    run here takes ~17 s) and a tag only this test's run has."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from tasks.ops.alerts import ALERT_BLOCK_NAME, overlong_automation

    slug = CustomWebhookNotificationBlock.get_block_type_slug()
    with ops.server.client() as c:
        block = c.get(f"/block_types/slug/{slug}/block_documents/name/{ALERT_BLOCK_NAME}")
        block.raise_for_status()
        automation = overlong_automation(
            UUID(block.json()["id"]),
            timedelta(seconds=10),
            tag="overlong-probe",
            name="test: run too long",
        )
        created = c.post("/automations/", json=automation.model_dump(mode="json"))
        created.raise_for_status()
    try:
        run_id = ops.trigger("data-pipeline", "daily", tags=["overlong-probe"])
        hits = ops.webhook.wait_for(
            lambda r: run_id in r["json"].get("text", "") and "too long" in r["json"]["text"],
            timeout=180,
        )
        run = ops.wait(run_id)
    finally:
        with ops.server.client() as c:
            c.delete(f"/automations/{created.json()['id']}").raise_for_status()

    assert hits, f"no overlong alert; got {ops.webhook.requests}"
    text = hits[0]["json"]["text"]
    assert "Pipeline alert: data-pipeline is running too long" in text
    assert "has been running for more than 10 seconds" in text
    assert f"/runs/flow-run/{run_id}" in text
    assert run["state_type"] == "COMPLETED"  # an alert, not a timeout: the run goes on


def _worker_environment(ops: Ops) -> tuple[str, str]:
    """What the worker's interpreter has installed, and where it imports the product from."""
    python = str(BIN / "python")
    freeze = run_ok([python, "-m", "pip", "freeze", "--all"], ops.worker_env, 120).stdout
    where = run_ok(
        [python, "-c", "import tasks, flows; print(tasks.__file__, flows.__file__)"],
        {**ops.worker_env, "PYTHONSAFEPATH": "1"},  # not from the current directory
        60,
    ).stdout
    return freeze, where


def test_git_clone_deployments_leave_the_worker_environment_alone(ops: Ops) -> None:
    """prefect.yaml's real pull steps (git clone), two deployments back to back through the
    process worker: each run uses the cloned code, and the worker's environment is the same
    after each (no package installed, the product still importable from where it was)."""
    before = _worker_environment(ops)
    for flow, deployment in [("ingest", "ingest-only"), ("transform", "transform-only")]:
        run = ops.wait(ops.trigger(flow, f"{deployment}-from-git"))
        assert run["state_type"] == "COMPLETED", (run["state"], ops.worker_log.read_text()[-4000:])
        assert _worker_environment(ops) == before, f"{deployment} changed the worker's environment"
    assert "pipeline code loaded from" in ops.worker_log.read_text()  # the clone's code ran
