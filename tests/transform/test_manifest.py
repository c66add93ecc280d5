"""The one manifest reader, on the manifest the real transform step writes (``dbt parse`` of the
repository's dbt project): the indexer's declarations and the column types search filters use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.index.documents import load_specs
from tasks.settings import get_settings
from tasks.transform.dbt import run_dbt
from tasks.transform.manifest import MODEL, manifest_path, read_manifest
from tasks.warehouse import get_warehouse


@pytest.mark.integration
def test_reads_what_dbt_writes(env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    run_dbt(["parse"], settings, get_warehouse(settings), mirror_nodes=False)

    manifest = read_manifest(manifest_path(settings.dbt_target_dir))

    models = manifest.models()
    assert "model.semantic_index.stg_demo__items" in models
    assert all(node.resource_type == MODEL for node in models.values())
    assert len(manifest.nodes) > len(models)  # the tests are nodes too
    (spec,) = load_specs(manifest)
    assert (spec.model, spec.schema_name, spec.relation, spec.namespace) == (
        "model.semantic_index.documents",
        "analytics",
        "documents",
        "products",
    )
    assert load_specs(settings) == [spec]
    types = manifest.nodes[spec.model].column_types
    assert types["price"] == "numeric(12,2)" and types["updated_at"].startswith("timestamp")


def test_missing_or_broken_manifest_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"No dbt manifest at .*run the transform step"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text('{"nodes": {"model.x.y": {"name": "y"')
    with pytest.raises(ConfigError, match=r"unreadable .*Re-run the transform step"):
        read_manifest(tmp_path / "manifest.json")
