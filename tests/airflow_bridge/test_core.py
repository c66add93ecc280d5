"""Table-driven tests of the bridge's pure rules (no servers)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect_airflow_bridge.core import (
    FlowRun,
    attempt_key,
    build_idempotency_key,
    candidate_keys,
    choose_flow_run,
    flow_run_url,
    split_deployment_name,
    to_json_parameters,
    ui_url_from_api_url,
)
from prefect_airflow_bridge.exceptions import PrefectConfigurationError

BASE = "dag:manual__2025-01-01:task:-1"


def run(key: str, state: str) -> FlowRun:
    return FlowRun.from_api(
        {
            "id": f"id-{key}",
            "name": "n",
            "state": {"type": state, "name": state.title()},
            "idempotency_key": key,
        }
    )


def test_idempotency_key_shape() -> None:
    assert build_idempotency_key("d", "r", "t", None) == "d:r:t:-1"
    assert build_idempotency_key("d", "r", "t", 3) == "d:r:t:3"


def test_attempt_keys() -> None:
    assert attempt_key(BASE, 1) == BASE
    assert attempt_key(BASE, 3) == f"{BASE}:try3"
    assert candidate_keys(BASE, 3) == [BASE, f"{BASE}:try2", f"{BASE}:try3"]
    assert candidate_keys(BASE, 0) == [BASE]


@pytest.mark.parametrize(
    ("existing", "try_number", "reattach_to", "new_key"),
    [
        # first attempt, nothing yet -> create with the base key
        ([], 1, None, BASE),
        # retry after a worker crash/timeout while the run is still going -> reattach
        ([(BASE, "RUNNING")], 2, BASE, None),
        ([(BASE, "SCHEDULED")], 2, BASE, None),
        ([(BASE, "PAUSED")], 2, BASE, None),
        # retry after the run completed (e.g. Airflow lost the result) -> reattach, succeed
        ([(BASE, "COMPLETED")], 2, BASE, None),
        # retry after the run failed/crashed/was cancelled -> new run for this try
        ([(BASE, "FAILED")], 2, None, f"{BASE}:try2"),
        ([(BASE, "CRASHED")], 2, None, f"{BASE}:try2"),
        ([(BASE, "CANCELLED")], 2, None, f"{BASE}:try2"),
        # the newest attempt's run decides
        ([(BASE, "FAILED"), (f"{BASE}:try2", "RUNNING")], 3, f"{BASE}:try2", None),
        ([(BASE, "FAILED"), (f"{BASE}:try2", "FAILED")], 3, None, f"{BASE}:try3"),
        # attempt 2 died before creating its run -> attempt 3 creates its own
        ([(BASE, "FAILED")], 3, None, f"{BASE}:try3"),
        # this attempt's own run already failed (resumed after deferral) -> report it
        ([(BASE, "FAILED"), (f"{BASE}:try2", "FAILED")], 2, f"{BASE}:try2", None),
        ([(BASE, "FAILED")], 1, BASE, None),
    ],
)
def test_choose_flow_run(
    existing: list[tuple[str, str]], try_number: int, reattach_to: str | None, new_key: str | None
) -> None:
    decision = choose_flow_run([run(k, s) for k, s in existing], BASE, try_number)
    if reattach_to:
        assert decision.reattach
        assert decision.flow_run is not None and decision.flow_run.idempotency_key == reattach_to
    else:
        assert not decision.reattach
        assert decision.key == new_key


@pytest.mark.parametrize(
    ("api_url", "ui_url"),
    [
        ("http://prefect:4200/api", "http://prefect:4200"),
        ("http://prefect:4200/api/", "http://prefect:4200"),
        ("https://example.com/prefect/api", "https://example.com/prefect"),
        (
            "https://api.prefect.cloud/api/accounts/a1/workspaces/w2",
            "https://app.prefect.cloud/account/a1/workspace/w2",
        ),
    ],
)
def test_ui_url_from_api_url(api_url: str, ui_url: str) -> None:
    assert ui_url_from_api_url(api_url) == ui_url
    assert flow_run_url(ui_url, "abc") == f"{ui_url}/runs/flow-run/abc"


@pytest.mark.parametrize("name", ["data-pipeline", "a/b/c", "/daily", "data-pipeline/ ", ""])
def test_split_deployment_name_rejects(name: str) -> None:
    with pytest.raises(PrefectConfigurationError, match="flow name>/<deployment name"):
        split_deployment_name(name)


def test_split_deployment_name() -> None:
    assert split_deployment_name("data-pipeline/daily") == ("data-pipeline", "daily")


def test_to_json_parameters() -> None:
    import datetime as dt

    params: dict[str, Any] = {"d": dt.date(2025, 1, 2), "n": {"x": [1, 2.5, None, True]}}
    assert to_json_parameters(params) == {"d": "2025-01-02", "n": {"x": [1, 2.5, None, True]}}
    assert to_json_parameters(None) == {}
    with pytest.raises(PrefectConfigurationError):
        to_json_parameters(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_terminal_states() -> None:
    assert run(BASE, "COMPLETED").is_terminal and not run(BASE, "COMPLETED").is_unsuccessful
    for state in ("FAILED", "CRASHED", "CANCELLED"):
        assert run(BASE, state).is_terminal and run(BASE, state).is_unsuccessful
    for state in ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"):
        assert not run(BASE, state).is_terminal
