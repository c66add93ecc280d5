"""Keeping secrets out of every URL and message the sources produce.

One place for the rule, applied at the choke points: the HTTP session's errors and retry logs
(:mod:`tasks.ingest.sources.http`), the error of a failed load
(``tasks.ingest.load._source_error``, which covers every kind, the web crawler's too) and the
records of dlt's and urllib3's loggers (:func:`install`).

Three things are redacted, each replaced by ``***``:

* the userinfo of a URL (``https://user:password@host`` -> ``https://***@host``);
* the value of a query parameter whose name says it is a credential (dlt's own list,
  ``SENSITIVE_PARAMS``, plus a few more), wherever such a ``name=value`` appears in the text;
* every configured secret value (:func:`register_secret`, called for each secret a source reads),
  as it is and percent-encoded, wherever it appears (a custom query parameter name, a server
  that echoes the credential in its error page, a library's exception text).
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

from dlt.sources.helpers.rest_client.redaction import SENSITIVE_PARAMS

MASK = "***"

#: Query parameter names whose values are credentials (compared case-insensitively).
CREDENTIAL_PARAMS = frozenset(
    {p.lower() for p in SENSITIVE_PARAMS}
    | {"auth", "authorization", "client_id", "code", "id_token", "passwd", "refresh_token"}
    | {"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}
)

#: Secrets shorter than this are not replaced inside text (a 1-3 character "secret" would mangle
#: every message and protects nothing); they are still masked as query parameter values.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@?#]+)@")
_PARAM = re.compile(r"(?P<key>(?:^|(?<=[?&;\s]))(?P<name>[\w.~%-]+)=)(?P<value>[^&#\s'\":<>)]*)")


def register_secret(value: str | None) -> None:
    """Remember ``value`` (a configured secret) so that :func:`redact` masks it everywhere."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def redact(text: str) -> str:
    """``text`` with URL userinfo, credential query parameters and known secrets masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    for value in known:
        text = text.replace(value, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _PARAM.sub(
        lambda m: f"{m['key']}{MASK}" if m["name"].lower() in CREDENTIAL_PARAMS else m[0], text
    )


class RedactingFilter(logging.Filter):
    """Redacts each record's message (with its arguments merged in) before it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters use a ready exc_text as it is: hand them the redacted traceback.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactingFilter()


#: Loggers that log request URLs: dlt's rest client (INFO, and params at DEBUG), urllib3 (every
#: request line at DEBUG) and the web crawler (page URLs). A filter applies only to records of
#: its own logger, not to its children's.
LIBRARY_LOGGERS = ("dlt", "urllib3.connectionpool", "tasks.ingest.sources.web.helpers")


def install(*logger_names: str) -> None:
    """Add the redacting filter to the named loggers (idempotent), by default
    :data:`LIBRARY_LOGGERS`."""
    for name in logger_names or LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
