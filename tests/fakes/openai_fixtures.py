"""Pytest fixtures for the local OpenAI-compatible server (imported by the conftests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, serve


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeOpenAIServer]:
    server = serve()
    yield server
    server.stop()


@pytest.fixture
def openai_server(_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """A running fake OpenAI server with no recorded requests and no queued faults."""
    _server.reset()
    return _server
