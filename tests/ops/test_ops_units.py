"""Fast checks of the operations pieces: retry rules, report, backups pruning, prefect.yaml and
its variants, Dockerfiles, the compose file and the alert definitions. No servers."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from prefect.flows import Flow
from prefect.states import Completed, Failed

from flows.main import PipelineSummary
from tasks.errors import (
    ConfigError,
    EmbeddingError,
    TransformError,
    ValidationFailed,
    WarehouseError,
)
from tasks.index.run import IndexResult
from tasks.ingest.load import IngestResult
from tasks.ops.alerts import (
    FAILED_EVENTS,
    PIPELINE_TAG,
    failure_automation,
    overlong_automation,
    webhook_block,
)
from tasks.ops.backup import prune
from tasks.ops.report import StageFailed, report_markdown, report_tables, run_stage
from tasks.ops.validation import ValidationReport
from tasks.retry import is_transient, retry_if_transient
from tasks.transform.dbt import DbtResult

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"


# ----------------------------------------------------------------------------- retry decisions


def _http_error(status: int, text: str = "") -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://provider.invalid/v1/embeddings")
    response = httpx.Response(status, request=request, text=text)
    return httpx.HTTPStatusError(f"{status} {text}", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (_http_error(400), False),
        (_http_error(401), False),
        (_http_error(404), False),
        (_http_error(408), True),
        (_http_error(429), True),
        (_http_error(429, '{"error": {"code": "insufficient_quota"}}'), False),
        (_http_error(500), True),
        (_http_error(503), True),
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (ConfigError("bad setting"), False),
        (ValidationFailed("mismatch"), False),
        (WarehouseError("down"), True),
        (EmbeddingError("timeout"), True),
        (ConnectionResetError("reset"), True),
        (ValueError("bad value"), False),
    ],
)
def test_is_transient(exc: BaseException, retry: bool) -> None:
    assert is_transient(exc) is retry


def test_retry_condition_reads_the_failed_state() -> None:
    retry = retry_if_transient(None, None, Failed(data=_http_error(503)))  # type: ignore[arg-type]
    no_retry = retry_if_transient(None, None, Failed(data=_http_error(403)))  # type: ignore[arg-type]
    assert retry is True
    assert no_retry is False
    assert retry_if_transient(None, None, Completed(data=1)) is True  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- report


def _summary() -> PipelineSummary:
    summary = PipelineSummary(
        ingest=[IngestResult(source="demo", rows_by_table={"items": 3, "reviews": 5})],
        dbt=DbtResult(
            command="build",
            models_built=2,
            tests_passed=1,
            nodes=[
                {"node": "model.x.items", "type": "model", "status": "success"},
                {"node": "test.x.unique_items", "type": "test", "status": "pass"},
            ],
        ),
        index=[
            IndexResult(
                namespace="products",
                model="documents",
                documents=3,
                chunks=3,
                embedded=1,
                unchanged=2,
                vectors_in_store=3,
                input_tokens=42,
                estimated_cost_usd=0.00084,
            )
        ],
        validation=ValidationReport(checks=[("vectors in products", True, "3 chunks, 3 in store")]),
        seconds={"ingest": 1.0, "transform": 2.0, "index": 3.0, "validate": 0.5},
    )
    return summary


def test_report_tables_hold_the_counts() -> None:
    tables = report_tables(_summary())
    assert tables["rows"] == [
        {"source": "demo", "table": "items", "rows": 3},
        {"source": "demo", "table": "reviews", "rows": 5},
    ]
    assert [n["status"] for n in tables["dbt"]] == ["success", "pass"]
    assert tables["index"][0]["embedded (new or changed)"] == 1
    assert tables["index"][0]["unchanged"] == 2
    assert tables["index"][0]["vectors in store"] == 3
    assert tables["index"][0]["input tokens"] == 42
    assert tables["index"][0]["estimated cost (USD)"] == 0.00084
    assert tables["validation"] == [
        {"check": "vectors in products", "passed": True, "detail": "3 chunks, 3 in store"}
    ]
    assert [d["stage"] for d in tables["durations"]] == ["ingest", "transform", "index", "validate"]


def test_markdown_names_the_failed_stage() -> None:
    ok = report_markdown(_summary())
    assert "succeeded" in ok and "8 rows from 1 source" in ok
    assert "42 tokens (~$0.0008)" in ok
    summary = _summary()
    summary.failed_stage, summary.error = "transform", "Stage 'transform' failed: boom"
    assert "Failed stage:** `transform`" in report_markdown(summary)
    assert "Pipeline summary" in summary.to_text()  # the CLI text is unchanged


def test_run_stage_wraps_errors_and_emits_events(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "tasks.ops.report.emit_stage_event", lambda s, o, p: events.append((s, o, p))
    )
    summary = PipelineSummary()
    with run_stage(summary, "ingest"):
        summary.ingest = [IngestResult(source="demo", rows_by_table={"items": 3})]
    with (
        pytest.raises(StageFailed, match="Stage 'transform' failed: TransformError") as info,
        run_stage(summary, "transform"),
    ):
        raise TransformError("test failed")
    assert isinstance(info.value.__cause__, Exception)
    assert summary.failed_stage == "transform"
    assert [(s, o) for s, o, _ in events] == [("ingest", "completed"), ("transform", "failed")]
    assert events[0][2]["total_rows"] == 3
    assert events[0][2]["rows"] == {"demo": {"items": 3}}


# ------------------------------------------------------------------------------------- backups


def test_prune_keeps_the_newest_and_ignores_other_files(tmp_path: Path) -> None:
    names = [f"warehouse-db-2026010{i}T000000000000Z.dump" for i in range(1, 6)]
    for name in [*names, "notes.txt", "warehouse-db-x.dump.partial"]:
        (tmp_path / name).write_text("x")
    removed = prune(tmp_path, keep=2)
    assert [p.name for p in removed] == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*names[3:], "notes.txt", "warehouse-db-x.dump.partial"]
    )
    assert prune(tmp_path, keep=2) == []  # running again removes nothing


# ------------------------------------------------------------------------------- prefect.yaml


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


PREFECT_FILES = [
    REPO / "prefect.yaml",
    DEPLOYMENTS / "prefect.docker.yaml",
    DEPLOYMENTS / "prefect.k8s.yaml",
    DEPLOYMENTS / "prefect.compose.yaml",
]


@pytest.mark.parametrize("path", PREFECT_FILES, ids=lambda p: p.name)
def test_every_deployment_points_at_a_flow_with_limits_and_tag(path: Path) -> None:
    spec = _load(path)
    assert "definitions" in spec
    assert len(spec["deployments"]) == 7
    for d in spec["deployments"]:
        module, func = d["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
        assert isinstance(flow, Flow), d["name"]
        assert PIPELINE_TAG in d["tags"]
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert d["work_pool"]["name"].startswith("pipeline-")
    for step in spec["pull"]:
        (name,) = step
        module, func = name.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), func)), name


def test_variants_deploy_the_same_flows_as_prefect_yaml() -> None:
    def shape(path: Path) -> list[tuple[Any, ...]]:
        return [
            (d["name"], d["entrypoint"], d.get("parameters"), str(d.get("schedules")))
            for d in _load(path)["deployments"]
        ]

    main = shape(PREFECT_FILES[0])
    for variant in PREFECT_FILES[1:]:
        assert shape(variant) == main, variant.name
    daily = _load(PREFECT_FILES[0])["deployments"][0]
    assert daily["schedules"][0]["timezone"] and daily["schedules"][0]["cron"]
    assert _load(DEPLOYMENTS / "prefect.docker.yaml")["deployments"][0]["work_pool"][
        "job_variables"
    ]["image"]
    assert _load(DEPLOYMENTS / "prefect.k8s.yaml")["deployments"][0]["work_pool"]["job_variables"][
        "namespace"
    ]


@pytest.mark.parametrize("path", PREFECT_FILES[:3], ids=lambda p: p.name)
def test_deployments_deployed_from_a_checkout_are_versioned_by_its_commit(path: Path) -> None:
    """prefect.yaml and the docker/k8s variants (deployed from a checkout; the compose one is
    deployed inside the image, whose runs carry PIPELINE_GIT_COMMIT instead)."""
    spec = _load(path)
    (step,) = spec["build"]
    assert step["prefect.deployments.steps.run_shell_script"]["id"] == "get-commit"
    assert {d["version"] for d in spec["deployments"]} == {"{{ get-commit.stdout }}"}


def test_no_secret_settings_in_deployment_files() -> None:
    for path in PREFECT_FILES:
        text = path.read_text()
        for secret in ("DATABASE_URL:", "OPENAI_API_KEY:", "PINECONE_API_KEY:", "password"):
            assert secret not in text, f"{secret} in {path.name}"


# -------------------------------------------------------------------------------- containers


DOCKERFILES = ["Dockerfile.pipeline", "Dockerfile.search", "Dockerfile.postgres"]


def _instructions(name: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOYMENTS / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def _stage(lines: list[str], name: str) -> list[str]:
    """Instructions of the stage ``FROM ... AS name`` up to the next FROM."""
    start = next(i for i, line in enumerate(lines) if re.match(rf"FROM .* AS {name}$", line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM ")), None)
    return lines[start:end]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_builds_without_a_registry(name: str) -> None:
    """Issue 13 item 6: no frontend image, no torch index, nothing of the base beyond python3."""
    text = (DEPLOYMENTS / name).read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE), "BuildKit would pull a frontend"
    lines = _instructions(name)
    assert lines[0] == "ARG BASE_IMAGE=local/python:3.11-bookworm"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms[0].startswith("FROM ${BASE_IMAGE} AS ")
    # No URL at all: torch and every other wheel come from the wheel folder or PIP_OPTIONS.
    steps = [line for line in lines if line.startswith(("FROM ", "ARG ", "RUN ", "ENV "))]
    assert not re.search(r"https?://", "\n".join(steps)), "a URL in a build step"
    runs = " ".join(line for line in lines if line.startswith("RUN "))
    assert "python3 -m venv" in runs
    # Before the venv exists only `python3` may be assumed (no `python`, no system pip).
    first_run = next(line for line in lines if line.startswith("RUN "))
    before_venv = first_run.split("python3 -m venv")[0]
    assert not re.search(r"\b(python|pip)\b", before_venv.replace("RUN --mount", ""))
    assert "--mount=type=bind,source=deployments/wheels,target=/wheels" in runs
    assert (DEPLOYMENTS / "wheels").is_dir()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_best_practices(name: str) -> None:
    lines = _instructions(name)
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) == 2, "two stages: the wheel folder and pip stay out of the runtime layers"
    final = lines[stages[-1] :]
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1] not in {"USER root", "USER 0"}
    assert any(line.startswith("HEALTHCHECK ") for line in final)
    assert not any(re.search(r"(PASSWORD|API_KEY|SECRET)\s*=", line) for line in lines)
    assert (DEPLOYMENTS / f"{name}.dockerignore").is_file()
    ignored = (DEPLOYMENTS / f"{name}.dockerignore").read_text().split()
    assert not any(p.startswith(("deployments", "requirements")) for p in ignored)


def test_pipeline_and_search_images_share_one_deps_stage() -> None:
    """Byte-identical ``deps`` stages: BuildKit installs the lock once for both images."""
    pipeline = _stage(_instructions("Dockerfile.pipeline"), "deps")
    search = _stage(_instructions("Dockerfile.search"), "deps")
    assert pipeline == search
    assert any("pip install $PIP_OPTIONS -r /tmp/requirements.lock" in line for line in pipeline)


@pytest.mark.parametrize(
    ("name", "user"), [("Dockerfile.pipeline", "pipeline"), ("Dockerfile.search", "search")]
)
def test_non_root_user_has_a_writable_home(name: str, user: str) -> None:
    """Issue 13 item 9: Prefect's home and result storage need a home the user owns."""
    lines = _instructions(name)
    final = _stage(lines, "runtime")
    useradd = next(line for line in final if "useradd" in line)
    assert "--create-home" in useradd and f"--home-dir /home/{user}" in useradd
    assert f"HOME=/home/{user}" in " ".join(line for line in final if line.startswith("ENV "))
    assert "--chown" not in " ".join(final), "code in /app stays read-only for the user"


def _check_compose(*args: str, validator: str = "auto") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOYMENTS / "check_compose.sh"), *args],
        env={**os.environ, "CHECK_COMPOSE_VALIDATOR": validator},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("validator", ["auto", "schema"])
def test_compose_file_is_valid(validator: str) -> None:
    ok = _check_compose(validator=validator)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "check_compose: valid" in ok.stdout


@pytest.mark.parametrize("validator", ["auto", "schema"])
def test_compose_check_rejects_an_invalid_file(validator: str, tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  a:\n    image: x\n    healthcheck:\n      retries: many\n")
    assert _check_compose(str(bad), validator=validator).returncode != 0


def test_compose_services_have_healthchecks_and_required_secrets() -> None:
    spec = _load(DEPLOYMENTS / "docker-compose.yml")
    services = spec["services"]
    assert {"postgres", "prefect-server", "worker", "search"} <= set(services)
    for name in ("postgres", "prefect-server", "worker", "search"):
        assert "healthcheck" in services[name], name
    assert "Dockerfile.search" in services["search"]["build"]["dockerfile"]
    text = (DEPLOYMENTS / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${SEARCH_API_KEYS:?" in text


def test_compose_images_are_all_built_here() -> None:
    """No registry: every image compose runs is one a service of the file builds."""
    services = _load(DEPLOYMENTS / "docker-compose.yml")["services"]
    built = {s["image"]: s["build"]["dockerfile"] for s in services.values() if "build" in s}
    assert set(built.values()) == {f"deployments/{name}" for name in DOCKERFILES}
    for name, service in services.items():
        assert service["image"] in built, f"{name} runs {service['image']}, which nothing builds"


def _duration_s(value: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert match and value, value
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def test_compose_allows_a_slow_prefect_server_and_free_ports() -> None:
    """Issue 13 item 9: ~3 min to start under load; every published port is a variable."""
    services = _load(DEPLOYMENTS / "docker-compose.yml")["services"]
    server = services["prefect-server"]
    assert _duration_s(server["healthcheck"]["start_period"]) >= 240
    published = [(name, port) for name, s in services.items() for port in s.get("ports", [])]
    assert {name for name, _ in published} == {"prefect-server", "search"}
    for name, port in published:
        assert re.fullmatch(r"127\.0\.0\.1:\$\{[A-Z_]+:-\d+\}:\d+", port), (name, port)
    # The server's home is a volume on a directory the image creates for the non-root user.
    home = server["environment"]["PREFECT_HOME"]
    assert any(v.endswith(f":{home}") for v in server["volumes"])
    runtime = " ".join(_stage(_instructions("Dockerfile.pipeline"), "runtime"))
    assert re.search(rf"chown pipeline:pipeline [^&]*{home}", runtime)
    assert server["environment"]["PREFECT_UI_STATIC_DIRECTORY"].startswith(home)


def test_search_reads_the_state_volume_the_pipeline_writes() -> None:
    """Issue 13 item 8: the search service sees the dbt manifest the worker's runs write."""
    services = _load(DEPLOYMENTS / "docker-compose.yml")["services"]
    worker, search = services["worker"], services["search"]
    data_dir = search["environment"]["DATA_DIR"]
    assert data_dir == "/var/lib/pipeline"
    worker_volume = next(v for v in worker["volumes"] if v.split(":")[1] == data_dir)
    assert f"{worker_volume}:ro" in search["volumes"]
    assert _service_env(worker)["DATA_DIR"] == data_dir


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment (YAML merge keys already applied by the loader)."""
    return dict(service["environment"])


# ------------------------------------------------------------------------------------- alerts


def test_webhook_block_keeps_the_url_secret() -> None:
    url = "https://hooks.slack.test/services/T000/B000/canary-secret-token"
    block = webhook_block(url)
    assert "canary-secret-token" not in repr(block)
    assert "canary-secret-token" not in str(block.model_dump())
    request = block._build_request_args(body="the body", subject="the subject")
    assert request["url"] == url
    assert request["json"] == {"text": "the subject\nthe body"}


def test_automations_match_tagged_runs_and_say_where_it_failed() -> None:
    from uuid import uuid4

    failure = failure_automation(uuid4())
    assert failure.trigger.expect == set(FAILED_EVENTS)
    assert failure.trigger.match_related.root == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": f"prefect.tag.{PIPELINE_TAG}",
    }
    body = failure.actions[0].body
    for piece in ("flow.name", "flow_run.state.message", "flow_run|ui_url", "deployment.name"):
        assert piece in body
    overlong = overlong_automation(uuid4(), timedelta(minutes=90))
    assert overlong.trigger.posture == "Proactive"
    assert overlong.trigger.within.total_seconds() == 90 * 60
    assert "90 minutes" in overlong.actions[0].body
    assert "1 minute\n" in overlong_automation(uuid4(), timedelta(minutes=1)).actions[0].body
    assert "15 seconds" in overlong_automation(uuid4(), timedelta(seconds=15)).actions[0].body


def test_drift_automation_renders_the_doctor_payload() -> None:
    """The drift alert fires on the doctor's event and its body renders the event's payload."""
    from uuid import uuid4

    from jinja2.sandbox import SandboxedEnvironment

    from tasks.ops.alerts import DRIFT_EVENT, drift_automation

    automation = drift_automation(uuid4())
    assert automation.trigger.expect == {DRIFT_EVENT} == {"pipeline.index.drift"}
    payload = {
        "repaired": False,
        "namespaces": [
            {
                "namespace": "products",
                "physical_namespace": "products__ab12",
                "counts": {"missing": 2, "orphan": 0, "metadata": 1},
            }
        ],
    }
    body = SandboxedEnvironment().from_string(automation.actions[0].body)
    text = body.render(event={"payload": payload})
    assert "Namespace products (products__ab12): 2 missing 1 metadata" in text
    assert "orphan" not in text
    assert "semantic-index doctor --repair" in text


def test_dead_letters_are_counted_but_do_not_fail_validation() -> None:
    from tasks.ops.validation import index_checks

    summary = _summary()
    summary.index[0].dead_letters = 1
    assert report_tables(summary)["index"][0]["dead letters"] == 1
    assert "1 rejected" in report_markdown(summary)
    r = IndexResult(namespace="products", model="documents", documents=3, chunks=3, dead_letters=1)
    checks = {name: (ok, detail) for name, ok, detail in index_checks(r, in_store=2)}
    assert checks["vectors in products"][0]  # 3 chunks - 1 dead letter == 2 vectors
    assert checks["dead letters in products"] == (
        True,
        "1 chunks rejected by the embedding provider (not indexed; fix, then "
        "`semantic-index replay`)",
    )
    assert not index_checks(r, in_store=3)[0][1]  # a dead letter must not be in the store
