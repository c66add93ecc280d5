"""Fixtures for the search service: real uvicorn servers on 127.0.0.1, real HTTP.

- ``api_url``: the service over the session's demo index (``demo_index``).
- ``empty_api_url``: the service over a fresh, empty database (CORS opened for one origin).
- ``hasty_api_url``: the demo index with a deadline too short for any search (504s).

Servers run in a thread of the test process; each binds its own socket on an ephemeral port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from tasks.settings import Settings
from tests.conftest import create_database

API_KEYS = ("key-one-0123456789", "key-two-9876543210")
CORS_ORIGIN = "https://app.example"


def serve(settings: Settings, app: Any = None) -> Generator[str, None, None]:
    """Run ``app`` (default: the app for ``settings``) until the generator is closed; yields
    its base URL."""
    app = app or create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def demo_settings(demo_index: dict[str, Any], **overrides: Any) -> Settings:
    """Settings of the demo index with API keys (nothing read from the environment)."""
    env = demo_index["env"]
    values: dict[str, Any] = {
        "database_url": env["DATABASE_URL"],
        "data_dir": env["DATA_DIR"],
        "search_api_keys": ",".join(API_KEYS),
        "search_mode": "vector",
        # Generous: the suite shares 2 cores with others; a 504 under load is not what's tested.
        "search_timeout_s": 60.0,
        # These servers run inside the test process: leave its torch threads as they are (the
        # service's default, one, is tested in test_api_service.py).
        "search_embed_threads": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def api_settings(demo_index: dict[str, Any]) -> Settings:
    """The settings the main test server runs with."""
    return demo_settings(demo_index)


@pytest.fixture(scope="session")
def api_url(api_settings: Settings) -> Iterator[str]:
    """Base URL of the service over the demo index."""
    yield from serve(api_settings)


@pytest.fixture(scope="session")
def empty_api_url(demo_index: dict[str, Any], pg_server: str) -> Iterator[str]:
    """Base URL of the service over an empty database (same dbt declarations as the demo)."""
    settings = demo_settings(
        demo_index,
        database_url=create_database(pg_server),
        search_api_cors_origins=CORS_ORIGIN,
    )
    yield from serve(settings)


@pytest.fixture(scope="session")
def hasty_api_url(demo_index: dict[str, Any]) -> Iterator[str]:
    """Base URL of the service over the demo index with a 1 ms deadline."""
    yield from serve(demo_settings(demo_index, search_timeout_s=0.001))


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client with a valid API key."""
    with httpx.Client(base_url=api_url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as c:
        yield c


@pytest.fixture
def anonymous(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client without an API key."""
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c
