"""The ``onnx-int8`` local backend: close to torch, exported once, kill-safe, its own index.

Real model, real export (torch.onnx + onnxruntime quantization), real ONNX Runtime session; the
query-path test runs the real search service over a real pgvector index.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tasks.embedders import local, onnx_runtime
from tasks.embedders.local import LocalEmbedder
from tasks.settings import LocalEmbedderConfig, Settings

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo"


def demo_items() -> list[dict[str, str]]:
    """The demo catalog rows."""
    with (DEMO / "items.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def real_texts() -> list[str]:
    """Real, variable-length texts: demo item descriptions and reviews, and one over-long."""
    items = [f"{r['name']}\n\n{r['description']}" for r in demo_items()[:96]]
    with (DEMO / "reviews.csv").open(newline="", encoding="utf-8") as f:
        reviews = [f"{r['title']}. {r['body']}" for r in list(csv.DictReader(f))[:64]]
    return [*items, *reviews, "ok", "wool " * 400]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export folder for the module (the export takes seconds)."""
    return tmp_path_factory.mktemp("onnx-export")


@pytest.fixture
def fresh_process_cache() -> Iterator[None]:
    """Forget loaded ONNX models, as a new process would."""
    local._load_onnx.cache_clear()
    yield
    local._load_onnx.cache_clear()


def onnx_embedder(export_dir: Path) -> LocalEmbedder:
    return LocalEmbedder(LocalEmbedderConfig(backend="onnx-int8", export_dir=export_dir))


def test_vectors_are_close_to_torchs(export_dir: Path) -> None:
    texts = real_texts()
    torch_vectors = np.array(LocalEmbedder(LocalEmbedderConfig()).embed(texts))
    onnx = onnx_embedder(export_dir)
    onnx_vectors = np.array(onnx.embed(texts))
    assert onnx_vectors.shape == torch_vectors.shape == (len(texts), onnx.dimension)
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.mean() >= 0.98, cosines.mean()
    assert cosines.min() >= 0.95, cosines.min()
    # Nearly the same vector whatever else is in its batch: padding is masked, but dynamic
    # quantization scales activations over the whole batch (measured: cosine 0.996 here).
    alone = np.array(onnx.embed([texts[3]]))[0]
    assert float(alone @ onnx_vectors[3]) > 0.99


def test_export_happens_once_and_is_reused(
    export_dir: Path, fresh_process_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx_embedder(export_dir).load()  # exported here, or by the test before
    files = sorted(export_dir.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith("all-minilm-l6-v2-")
    before = files[0].stat()

    exports: list[Path] = []
    real_export = onnx_runtime.export_int8

    def counting(model: Any, target: Path) -> None:
        exports.append(target)
        real_export(model, target)

    monkeypatch.setattr(onnx_runtime, "export_int8", counting)
    local._load_onnx.cache_clear()  # a new process: loads from the data dir
    again = onnx_embedder(export_dir)
    assert len(again.embed(["a tent for two"])[0]) == 384
    assert exports == []
    after = files[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(export_dir.iterdir()) == files  # no temporary leftovers


def test_export_key_follows_model_files_and_versions(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 384}')
    first = onnx_runtime.export_key(str(model))
    assert onnx_runtime.export_key(str(model)) == first
    (model / "config.json").write_text('{"hidden_size": 768}')
    assert onnx_runtime.export_key(str(model)) != first
    assert onnx_runtime.export_key("some/hub-model") != onnx_runtime.export_key("other/model")


KILLED_EXPORT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tasks.embedders.local import LocalEmbedder
    from tasks.settings import LocalEmbedderConfig
    LocalEmbedder(LocalEmbedderConfig(backend="onnx-int8", export_dir=Path(sys.argv[1]))).load()
    """
)


def test_an_export_killed_midway_leaves_nothing_that_is_used(
    tmp_path: Path, fresh_process_cache: None
) -> None:
    export_dir = tmp_path / "onnx"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(export_dir)], env=env)
    try:
        # Kill it once the fp32 graph is being written or quantized, before the rename.
        deadline = time.monotonic() + 300
        while not list(export_dir.glob(".export-*/model.onnx")):
            assert child.poll() is None, "the export finished or failed before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert list(export_dir.glob("*.onnx")) == []  # only the temporary folder is left

    embedder = onnx_embedder(export_dir)
    vector = np.array(embedder.embed(["waterproof hiking boots"])[0])
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert len(list(export_dir.glob("*.onnx"))) == 1


def test_the_backend_is_part_of_the_fingerprint(export_dir: Path) -> None:
    torch_embedder = LocalEmbedder(LocalEmbedderConfig())
    onnx = onnx_embedder(export_dir)
    assert torch_embedder.fingerprint != onnx.fingerprint
    assert onnx.fingerprint_payload()["backend"] == "onnx-int8"
    # torch adds nothing: indexes built before backends existed keep their fingerprint.
    assert torch_embedder.fingerprint_payload() == {
        "provider": "local",
        "model": "all-MiniLM-L6-v2",
        "dimension": 384,
    }


def test_settings_select_the_backend_and_the_export_folder(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, local_backend="onnx-int8", data_dir=tmp_path)
    config = settings.embedder_config()
    assert isinstance(config, LocalEmbedderConfig)
    assert config.backend == "onnx-int8"
    assert config.export_dir == tmp_path.resolve() / "models" / "onnx"
    torch_config = Settings(_env_file=None, data_dir=tmp_path).embedder_config()
    assert isinstance(torch_config, LocalEmbedderConfig) and torch_config.backend == "torch"


def test_the_search_service_embeds_queries_with_the_onnx_backend(
    pg_server: str, tmp_path: Path
) -> None:
    from tasks.embedders import get_embedder
    from tasks.stores import get_store
    from tasks.stores.base import VectorRecord
    from tests.api.conftest import serve
    from tests.conftest import create_database, reset_caches
    from tests.search.conftest import write_manifest

    queries = [json.loads(line) for line in (DEMO / "queries.jsonl").read_text().splitlines()]
    queries = [q for q in queries if q["filter"] is None][:4]
    wanted = {i for q in queries for i in q["relevant_ids"]}
    items = [r for r in demo_items() if f"item:{r['item_id']}" in wanted] + demo_items()[:40]
    items = list({r["item_id"]: r for r in items}.values())

    write_manifest(tmp_path, "items", ["category"])
    settings = Settings(
        _env_file=None,
        database_url=create_database(pg_server),
        data_dir=tmp_path,
        local_backend="onnx-int8",
        search_mode="vector",
        search_api_keys="key-onnx-0123456789",
        search_timeout_s=60.0,
    )
    embedder = get_embedder(settings)
    assert embedder.fingerprint_payload().get("backend") == "onnx-int8"
    texts = [f"{r['name']}\n\n{r['description']}" for r in items]
    store = get_store(settings)
    try:
        store.ensure_namespace("items", embedder.dimension)
        store.upsert(
            "items",
            [
                VectorRecord(
                    id=f"item:{r['item_id']}#0",
                    document_id=f"item:{r['item_id']}",
                    values=v,
                    text=text,
                    content_hash=str(r["item_id"]),
                    metadata={"category": r["category"], "title": r["name"], "chunk_position": 0},
                )
                for r, text, v in zip(items, texts, embedder.embed(texts), strict=True)
            ],
        )
    finally:
        store.close()
    try:
        server = serve(settings)
        url = next(server)
        headers = {"X-API-Key": "key-onnx-0123456789"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for q in queries:
                response = client.post("/search", json={"query": q["query"], "top_k": 3})
                assert response.status_code == 200, response.text
                found: dict[str, Any] = response.json()
                top = [r["document_id"] for r in found["results"]]
                assert set(q["relevant_ids"]) & set(top), (q["query"], top)
        server.close()
        # The service's query vectors are the onnx embedder's (same process-wide instance).
        query = queries[0]["query"]
        assert get_embedder(settings) is embedder
        assert np.allclose(embedder.embed_query(query), embedder.embed([query])[0], atol=1e-6)
    finally:
        reset_caches()
