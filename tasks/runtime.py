"""Process-wide defaults applied before Prefect, dlt or dbt start: no telemetry, no phoning home,
and a start-up timeout for Prefect's temporary server that a busy machine can meet.

Each is a ``setdefault``: an explicit environment variable always wins. Prefect reads its
settings when it is first imported, so these must be applied before that (``import flows`` does
it; ``python flows/main.py`` does it before importing Prefect).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # A run without PREFECT_API_URL starts a temporary Prefect server and waits this long for
    # it (Prefect's default: 20 s). Its first start also migrates a new SQLite database: on a
    # busy 2-core machine that took 22-61 s, and the first `make demo` died at 20 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
}


def apply_offline_defaults() -> None:
    """Set the defaults above unless the user set these variables themselves."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM exit through ``SystemExit`` so exit handlers run.

    By default SIGTERM kills Python without running ``atexit`` handlers, so an embedded
    PostgreSQL server started by this process would be left running. Only installed from the
    main thread and only over the default handler (Prefect, uvicorn or the user may have their
    own, which exit cleanly already).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
