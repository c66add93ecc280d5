"""The Prefect task: indexes through the settings and leaves a progress artifact at 100 %."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tasks.index.tasks import index_task
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse
from tests.fakes.openai_server import FakeOpenAIServer
from tests.index.helpers import SPEC, base_docs_for_cli, store_rows, write_docs


async def _artifact(key: str) -> object:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return found[0] if found else None


def test_index_task_reports_progress(
    env: pytest.MonkeyPatch, prefect_harness: None, openai_server: FakeOpenAIServer
) -> None:
    env.setenv("OPENAI_API_KEY", "test-key")
    env.setenv("OPENAI_BASE_URL", openai_server.base_url)
    env.setenv("EMBEDDING_DIMENSIONS", "8")
    env.setenv("INDEX_BATCH_SIZE", "1")
    get_settings.cache_clear()
    conninfo = get_warehouse().conninfo
    write_docs(conninfo, base_docs_for_cli())

    result = index_task(SPEC)
    assert result.embedded == 3 and result.vectors_in_store == 3 and result.requests == 1
    assert set(store_rows(conninfo, "products")) == {"item:0#0", "item:1#0", "item:2#0"}
    artifact = asyncio.run(_artifact("index-products"))
    assert artifact is not None and artifact.type == "progress"  # type: ignore[attr-defined]
    assert float(artifact.data) == 100.0  # type: ignore[attr-defined]
