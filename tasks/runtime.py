"""Process-wide defaults applied before Prefect, dlt or dbt start: no telemetry, no phoning home.

Each is a ``setdefault``: an explicit environment variable always wins.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    """Turn telemetry off unless the user set these variables themselves."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
