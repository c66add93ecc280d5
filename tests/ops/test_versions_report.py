"""Versions in the run report and the stage events, and prefect.yaml's deployment version from
the commit (Prefect's own ``run_shell_script`` step runs the build step as ``prefect deploy``
does). No servers: the deployed path is checked in test_ops_deployments.py."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.deployments.steps.utility import run_shell_script

from flows.main import PipelineSummary
from tasks.errors import TransformError
from tasks.index.run import IndexResult
from tasks.ops.report import ARTIFACT_KEYS, report_markdown, report_tables, run_stage, run_versions
from tasks.ops.versions import VERSION_FIELDS

REPO = Path(__file__).resolve().parents[2]


def head_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def indexed_summary() -> PipelineSummary:
    summary = PipelineSummary()
    summary.index = [
        IndexResult(namespace="products", model="documents", fingerprint="f1f2", run_id=7)
    ]
    summary.seconds = {"index": 1.0}
    return summary


def test_stage_events_carry_the_runs_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "tasks.ops.report.emit_stage_event", lambda s, o, p: events.append((s, o, p))
    )
    summary = indexed_summary()
    with run_stage(summary, "index"):
        pass
    with (
        pytest.raises(Exception, match="Stage 'transform' failed"),
        run_stage(summary, "transform"),
    ):
        raise TransformError("boom")

    [(_, _, done), (_, _, failed)] = events
    for payload in (done, failed):
        versions = payload["versions"]
        assert tuple(versions) == VERSION_FIELDS
        assert versions["git_commit"] == head_commit()
        assert versions["index_fingerprint"] == "f1f2"  # from the run's index results
    assert done["namespaces"]["products"]["run id"] == 7


def test_report_has_a_versions_table_and_line() -> None:
    summary = indexed_summary()
    versions = run_versions(summary)
    tables = report_tables(summary, versions)
    assert {r["field"]: r["value"] for r in tables["versions"]} == versions
    assert tables["index"][0]["fingerprint"] == "f1f2"
    markdown = report_markdown(summary, versions)
    assert f"git_commit `{head_commit()}`" in markdown and "index_fingerprint `f1f2`" in markdown
    assert ARTIFACT_KEYS["versions"] in markdown
    assert report_tables(summary)["versions"] == []  # pure callers without versions: no table


def build_step() -> dict[str, Any]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [step] = spec["build"]
    found: dict[str, Any] = step["prefect.deployments.steps.run_shell_script"]
    for deployment in spec["deployments"]:
        assert deployment["version"] == "{{ " + found["id"] + ".stdout }}", deployment["name"]
    return found


def test_deployments_take_their_version_from_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = build_step()
    args = {k: v for k, v in step.items() if k != "id"}

    def run_in(directory: Path) -> str:
        result = asyncio.run(run_shell_script(**{**args, "directory": str(directory)}))
        return result["stdout"]

    assert run_in(REPO) == head_commit()
    # Outside a checkout (an image): PIPELINE_GIT_COMMIT, else empty (Prefect's default).
    monkeypatch.delenv("PIPELINE_GIT_COMMIT", raising=False)
    assert run_in(tmp_path) == ""
    monkeypatch.setenv("PIPELINE_GIT_COMMIT", "abc1234")
    assert run_in(tmp_path) == "abc1234"
