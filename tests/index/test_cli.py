"""``semantic-index index``: dry run, then a real run with progress bars, as a user runs it
after the real ingest and transform steps (the manifest is wherever the transform wrote it)."""

from __future__ import annotations

import pytest

from flows.cli import main
from tasks.ingest.load import ingest_source
from tasks.ingest.sources import load_sources_file
from tasks.settings import get_settings
from tasks.transform.dbt import run_dbt
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import store_rows


@pytest.mark.integration
def test_cli_dry_run_then_index(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("OPENAI_API_KEY", "test-key")
    env.setenv("OPENAI_BASE_URL", openai_server.base_url)
    env.setenv("EMBEDDING_DIMENSIONS", "8")
    get_settings.cache_clear()
    settings = get_settings()
    warehouse = get_warehouse(settings)
    sources = load_sources_file(settings.sources_file)
    for source in sources.get(None):
        ingest_source(source, sources.base_dir, settings, warehouse)
    run_dbt(["build"], settings, warehouse)
    assert (settings.dbt_target_dir / "manifest.json").is_file()
    assert not (settings.dbt_project_dir / "target" / "manifest.json").exists()

    assert main(["index", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "products -> products: 320 documents" in out and "would embed 320" in out
    assert openai_server.requests == []

    assert main(["index"]) == 0
    captured = capsys.readouterr()
    assert "embedded 320" in captured.out and "320 vectors in store" in captured.out
    for phase in ("chunking", "planning", "embedding", "writing"):  # one bar per phase
        assert f"products {phase}" in captured.err
    assert len(store_rows(warehouse.conninfo, "products")) == 320
