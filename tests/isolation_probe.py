"""Run by ``test_isolation`` in a child pytest session whose environment and working directory
carry stray settings; not collected on its own (the name does not start with ``test_``).
"""

from __future__ import annotations

import os

from tasks.settings import Settings, get_settings
from tests.conftest import settings_env_names


def test_the_session_starts_from_the_defaults() -> None:
    names = settings_env_names()
    assert [key for key in os.environ if key.lower() in names] == []
    assert get_settings().model_dump() == Settings.model_construct().model_dump()
