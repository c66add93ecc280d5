"""Versions in every output, and ``semantic-index diff``, after real index runs on both stores:
the versions each run records in ``index_state.runs``, the fingerprint and run id every stored
vector carries (pgvector rows, the local Pinecone server's memory), that they neither make a
no-change run rewrite anything (or record a document change) nor look like drift to the doctor,
and the diff of a run that added, changed and deleted documents."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flows.cli import main
from tasks.index.doctor import diagnose
from tasks.index.ledger import Ledger
from tasks.index.run import IndexResult, index_documents
from tasks.ops.diff import diff_runs
from tasks.ops.versions import VERSION_FIELDS, collect_versions, git_commit
from tasks.settings import PROJECT_ROOT, Settings, get_settings
from tasks.stores.base import VectorStore
from tasks.stores.pgvector import PgVectorStore
from tasks.transform.dbt import run_dbt
from tasks.transform.manifest import manifest_path, read_manifest
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.pinecone_server import FakePinecone
from tests.index.helpers import SPEC, Doc, fake_openai, store_rows, write_docs
from tests.stores.conftest import (  # noqa: F401  (the Pinecone server fixtures)
    fake_pinecone,
    make_pinecone_store,
    pinecone_server,
)

pytestmark = pytest.mark.integration

DIMS = 8
NS = SPEC.namespace
DOCS = {f"item:{i}": Doc(f"Item {i}", f"A sturdy thing number {i}.") for i in range(6)}


def head_commit() -> str:
    """``git rev-parse HEAD`` of this checkout, asked independently of the code under test."""
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@dataclass
class Pieces:
    settings: Settings
    store: VectorStore
    #: ``{id: metadata}`` of what the store holds in the namespace, read past the store class.
    stored: Callable[[], dict[str, dict[str, Any]]]
    embedder: Any
    ledger: Ledger

    def index(self) -> IndexResult:
        warehouse = get_warehouse(self.settings)
        return index_documents(SPEC, warehouse, self.embedder, self.store, settings=self.settings)

    def changes(self, run_id: int | None) -> dict[str, str]:
        """``{document id: change}`` the run recorded in ``index_state.run_documents``."""
        with psycopg.connect(get_warehouse(self.settings).conninfo) as conn:
            rows = conn.execute(
                "select document_id, change from index_state.run_documents where run_id = %s",
                (run_id,),
            ).fetchall()
        return dict(rows)

    def runs_row(self, run_id: int | None) -> dict[str, Any]:
        with psycopg.connect(get_warehouse(self.settings).conninfo) as conn:
            cur = conn.execute("select * from index_state.runs where run_id = %s", (run_id,))
            names = [c.name for c in cur.description or []]
            row = cur.fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))


@pytest.fixture(params=["pgvector", "pinecone"])
def pieces(
    request: pytest.FixtureRequest,
    env: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
) -> Iterator[Pieces]:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources: []\n")
    env.setenv("SOURCES_FILE", str(sources))
    get_settings.cache_clear()
    settings = get_settings()
    warehouse = get_warehouse(settings)
    # The real transform step's manifest (dbt parse of the repository's project).
    run_dbt(["parse"], settings, warehouse, mirror_nodes=False)
    write_docs(warehouse.conninfo, DOCS)
    store: VectorStore
    if request.param == "pgvector":
        store = PgVectorStore(warehouse, schema=settings.vector_schema)

        def stored() -> dict[str, dict[str, Any]]:
            return {i: row[1] for i, row in store_rows(warehouse.conninfo, NS).items()}

    else:
        pinecone = request.getfixturevalue("make_pinecone_store")()
        server: FakePinecone = request.getfixturevalue("fake_pinecone")
        store = pinecone

        def stored() -> dict[str, dict[str, Any]]:
            vectors = server.vectors(pinecone.config.index_name, NS)
            return {i: dict(m) for i, (_, m) in vectors.items()}

    ledger = Ledger(warehouse, settings.index_state_schema)
    embedder = fake_openai(openai_server.base_url, dimensions=DIMS)
    yield Pieces(settings, store, stored, embedder, ledger)
    ledger.close()
    store.close()


def test_runs_record_versions_and_vectors_carry_their_run(
    pieces: Pieces,
    request: pytest.FixtureRequest,
    openai_server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = pieces.settings
    first = pieces.index()

    # Each recorded field, against what it must be, found independently.
    row = pieces.runs_row(first.run_id)
    manifest = read_manifest(manifest_path(settings.dbt_target_dir))
    project = yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())
    assert row["package_version"] == importlib.metadata.version("semantic-index-pipeline")
    assert row["git_commit"] == head_commit()
    assert row["sources_sha256"] == hashlib.sha256(settings.sources_file.read_bytes()).hexdigest()
    assert row["dbt_manifest_hash"] == manifest.fingerprint()
    assert row["dbt_project_version"] == str(project["version"]) == "1.0.0"
    assert row["fingerprint"] == first.fingerprint
    assert row["index_config"]["chunker"]["max_tokens"] > 0
    assert row["index_config"]["embedder"]["dimension"] == DIMS
    # Its document changes: every document added, counted, and no snapshot of the namespace.
    assert row["document_changes"] is True and row["documents"] is None
    assert pieces.changes(first.run_id) == dict.fromkeys(DOCS, "added")
    assert row["document_count"] == len(DOCS)

    # Every stored vector carries the fingerprint and the run that wrote it.
    held = pieces.stored()
    assert len(held) == len(DOCS)
    assert {(m["index_fingerprint"], m["index_run_id"]) for m in held.values()} == {
        (first.fingerprint, first.run_id)
    }

    # A run with nothing new writes nothing (the run id is not in the metadata hash) ...
    openai_server.reset()
    again = pieces.index()
    assert (again.upserted, again.embedded, again.metadata_updated) == (0, 0, 0)
    assert openai_server.requests == []
    assert {m["index_run_id"] for m in pieces.stored().values()} == {first.run_id}
    assert pieces.changes(again.run_id) == {}  # ... and records no document change
    assert pieces.runs_row(again.run_id)["document_count"] == len(DOCS)
    # ... and the doctor does not take the stamp for drift.
    report = diagnose(pieces.ledger, pieces.store, NS, DIMS)
    assert report.clean, report.to_text()

    # A third run adds, changes (text; metadata only) and deletes documents.
    docs = dict(DOCS)
    docs["item:9"] = Doc("Item 9", "A brand new thing.")
    docs["item:1"] = Doc("Item 1", "A sturdier thing number 1.")
    docs["item:2"] = Doc("Item 2", "A sturdy thing number 2.", category="garden")
    del docs["item:3"]
    write_docs(get_warehouse(settings).conninfo, docs)
    third = pieces.index()
    assert (third.embedded, third.metadata_updated, third.deleted) == (2, 1, 1)
    runs = {i: m["index_run_id"] for i, m in pieces.stored().items()}
    assert runs == {
        **{f"{d}#0": first.run_id for d in ("item:0", "item:4", "item:5")},
        # the metadata-only update is stamped too: its vector kept the run's keys
        **{f"{d}#0": third.run_id for d in ("item:1", "item:2", "item:9")},
    }
    assert diagnose(pieces.ledger, pieces.store, NS, DIMS).clean

    diff = diff_runs(pieces.ledger, first.run_id or 0, third.run_id or 0)
    assert (diff.added, diff.changed, diff.deleted) == (
        ["item:9"],
        ["item:1", "item:2"],
        ["item:3"],
    )
    assert diff.config == {} and diff.versions == {} and not diff.models_changed
    assert diff.between is not None
    assert diff.between.runs == 2
    assert diff.between.input_tokens == (again.input_tokens + third.input_tokens) > 0

    if request.node.callspec.params["pieces"] != "pgvector":
        return
    # The command: text, JSON, and an unknown run id.
    assert main(["diff", str(first.run_id), str(third.run_id)]) == 0
    out = capsys.readouterr().out
    assert "documents: 2 added" not in out
    assert "documents: 1 added, 2 changed, 1 deleted (6 -> 6)" in out
    assert "changed: item:1, item:2" in out and "config: unchanged" in out
    assert "models: unchanged" in out and "runs after" in out
    assert main(["diff", str(first.run_id), str(third.run_id), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["documents"]["deleted"] == ["item:3"]
    assert payload["a"]["versions"]["git_commit"] == head_commit()
    assert payload["models"]["changed"] is False
    assert main(["diff", str(first.run_id), "999999"]) == 1
    assert "No indexing run 999999 in index_state.runs" in capsys.readouterr().err


def test_diff_names_config_and_version_changes_across_a_rebuild(
    env: pytest.MonkeyPatch, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources: []\n")
    env.setenv("SOURCES_FILE", str(sources))
    get_settings.cache_clear()
    settings = get_settings()
    warehouse = get_warehouse(settings)
    write_docs(warehouse.conninfo, DOCS)
    embedder = fake_openai(openai_server.base_url, dimensions=DIMS)
    store = PgVectorStore(warehouse, schema=settings.vector_schema)
    ledger = Ledger(warehouse, settings.index_state_schema)
    try:
        first = index_documents(SPEC, warehouse, embedder, store, settings=settings)
        sources.write_text("sources: []  # edited\n")
        other = settings.model_copy(update={"chunk_tokens": 64})
        rebuilt = index_documents(SPEC, warehouse, embedder, store, settings=other)
        diff = diff_runs(ledger, first.run_id or 0, rebuilt.run_id or 0)
    finally:
        store.close()
        ledger.close()

    assert rebuilt.switched
    assert diff.config["fingerprint"] == (first.fingerprint, rebuilt.fingerprint)
    assert diff.config["namespace"] == (first.physical_namespace, rebuilt.physical_namespace)
    assert diff.config["chunker.max_tokens"][1] == 64
    assert set(diff.versions) == {"sources_sha256"}
    # The document delta is relative to the rebuild: its first run added every document to the
    # new physical namespace, and the diff says so.
    assert (diff.added, diff.changed, diff.deleted) == (sorted(DOCS), [], [])
    assert diff.relative_to == rebuilt.physical_namespace
    text = diff.to_text()
    assert "sources_sha256:" in text and "chunker.max_tokens:" in text
    assert f"documents: {len(DOCS)} added, 0 changed, 0 deleted (6 -> 6)" in text
    assert f"changes made to {rebuilt.physical_namespace}; a rebuild's first run" in text


def test_versions_need_no_checkout_and_no_manifest(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Outside a checkout the commit comes from the environment (images set it), else None.
    assert git_commit(tmp_path, "abc1234") == "abc1234"
    assert git_commit(tmp_path) is None
    assert git_commit(PROJECT_ROOT, "abc1234") == head_commit()  # a checkout's HEAD wins
    env.setenv("PIPELINE_GIT_COMMIT", "feedbeef")
    env.setenv("DATA_DIR", str(tmp_path / "data"))
    env.setenv("SOURCES_FILE", str(tmp_path / "missing.yml"))
    get_settings.cache_clear()
    versions = collect_versions(get_settings())
    assert versions.dbt_manifest_hash is None and versions.sources_sha256 is None
    assert versions.index_fingerprint is None
    assert tuple(versions.as_dict()) == VERSION_FIELDS


def test_manifest_hash_is_stable_across_parses_of_the_same_models(env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    path = manifest_path(settings.dbt_target_dir)
    run_dbt(["parse"], settings, get_warehouse(settings), mirror_nodes=False)
    first_bytes, first = path.read_bytes(), read_manifest(path).fingerprint()
    run_dbt(["parse", "--no-partial-parse"], settings, get_warehouse(settings), mirror_nodes=False)
    assert path.read_bytes() != first_bytes  # dbt stamps every invocation ...
    assert read_manifest(path).fingerprint() == first  # ... the models are the same
