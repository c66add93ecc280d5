"""Indexing tests use the local OpenAI-compatible server (fixtures shared with tests/embedders)."""

from tests.fakes.openai_fixtures import _server, openai_server  # noqa: F401
