"""Embedder tests use the local OpenAI-compatible server (fixtures shared with tests/index)."""

from tests.fakes.openai_fixtures import _server, openai_server  # noqa: F401
