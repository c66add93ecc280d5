"""Running a flow from the command line: clear errors and exit codes instead of tracebacks.

``python flows/main.py`` (and the other ``__main__`` blocks) call :func:`run_cli`. It checks the
settings before anything starts (no Prefect server, no warehouse), stops the embedded PostgreSQL
server cleanly on SIGTERM, and turns the errors a user can fix into one ``error: ...`` line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tasks.errors import ConfigError, PipelineError
from tasks.runtime import stop_cleanly_on_sigterm
from tasks.settings import get_settings

logger = logging.getLogger(__name__)

#: Prefect's message when its temporary server does not answer in time (prefect/server/api).
_EPHEMERAL_TIMEOUT = "ephemeral Prefect API server"

EPHEMERAL_HINT = (
    "Prefect's temporary API server did not answer within "
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={seconds} s (its first start also creates "
    "its database, which is slow on a busy machine). Raise that setting, or start a server once "
    "with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api."
)


def ephemeral_timeout_message(exc: BaseException) -> str | None:
    """The hint for Prefect's "timed out ... ephemeral server" error, ``None`` for others."""
    if _EPHEMERAL_TIMEOUT not in str(exc):
        return None
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return EPHEMERAL_HINT.format(seconds=PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def run_cli(main: Callable[[], int | None]) -> int:
    """Run ``main`` as a command: returns its exit code (0 if it returns ``None``).

    Exit codes: 2 for unusable settings (checked before ``main`` runs), 1 for a failed run with
    a domain error or Prefect's server start-up timeout; anything else propagates as usual.
    """
    stop_cleanly_on_sigterm()
    try:
        get_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return main() or 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        hint = ephemeral_timeout_message(exc)
        if hint is None:
            raise
        print(f"error: {hint}", file=sys.stderr)
        return 1
