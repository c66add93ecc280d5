"""``python -m tasks.index``: dry run, then a real run with a progress bar, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.index import main
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, base_docs_for_cli, store_rows, write_docs


def _manifest(project: Path) -> None:
    embedding = SPEC.model_dump(exclude={"model", "schema_name", "relation"})
    node = {
        "resource_type": "model",
        "schema": SPEC.schema_name,
        "name": SPEC.relation,
        "config": {"meta": {"embedding": embedding}},
    }
    (project / "target").mkdir(parents=True)
    (project / "target" / "manifest.json").write_text(json.dumps({"nodes": {SPEC.model: node}}))


def test_cli_dry_run_then_index(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    openai_server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _manifest(tmp_path / "dbt")
    env.setenv("DBT_PROJECT_DIR", str(tmp_path / "dbt"))
    env.setenv("OPENAI_API_KEY", "test-key")
    env.setenv("OPENAI_BASE_URL", openai_server.base_url)
    env.setenv("EMBEDDING_DIMENSIONS", "8")
    get_settings.cache_clear()
    conninfo = get_warehouse().conninfo
    write_docs(conninfo, base_docs_for_cli())

    assert main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would embed 3" in out and openai_server.requests == []

    assert main([]) == 0
    captured = capsys.readouterr()
    assert "embedded 3" in captured.out and "3 vectors in store" in captured.out
    assert "chunk" in captured.err  # the progress bar
    assert len(store_rows(conninfo, "products")) == 3
    assert len(openai_server.answered) == 1
