"""``python -m api``: serve the search service with uvicorn (embedded defaults when unset)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys

from pydantic import SecretStr

import flows  # noqa: F401  (offline defaults: no telemetry)
from api.middleware import JsonFormatter
from tasks.errors import PipelineError
from tasks.runtime import stop_cleanly_on_sigterm
from tasks.settings import get_settings


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the service and the access log (no tracebacks)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Start uvicorn on SEARCH_API_HOST:SEARCH_API_PORT; returns the exit code."""
    parser = argparse.ArgumentParser(prog="semantic-search-api", description=__doc__)
    parser.add_argument("--host", default=None, help="Bind address (SEARCH_API_HOST).")
    parser.add_argument("--port", type=int, default=None, help="Port (SEARCH_API_PORT).")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    # uvicorn restores the handler it found and re-raises SIGTERM after its graceful shutdown:
    # with this one that ends in SystemExit, so an embedded server we started is stopped.
    stop_cleanly_on_sigterm()

    import uvicorn

    from api.main import create_app

    try:
        settings = get_settings()
        if settings.search_api_keys is None and not settings.search_api_auth_disabled:
            # Nothing configured: stay closed, but usable. A random key for this process only,
            # shown once on the terminal (never logged).
            key = secrets.token_urlsafe(24)
            settings = settings.model_copy(update={"search_api_keys": SecretStr(key)})
            print(
                f"No SEARCH_API_KEYS set: this process accepts the generated key\n  {key}\n"
                "Send it as `X-API-Key`. Set SEARCH_API_KEYS to choose your own.",
                file=sys.stderr,
            )
        app = create_app(settings)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(
        app,
        host=args.host or settings.search_api_host,
        port=args.port or settings.search_api_port,
        access_log=False,  # our middleware writes structured access lines
        log_config=None,  # keep the JSON logging configured above
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
