"""Domain errors raised by the bridge; each message says what to do next.

They deliberately do not derive from Airflow exceptions so the hook stays usable (and testable)
on its own; the operator decides which of them must skip Airflow's retries.
"""

from __future__ import annotations


class PrefectBridgeError(Exception):
    """Base class for every error raised by the Prefect bridge."""


class PrefectConfigurationError(PrefectBridgeError):
    """The Airflow connection or operator arguments cannot be used as given."""


class PrefectConnectionError(PrefectBridgeError):
    """The Prefect API could not be reached (refused, DNS, timeout) even after retries."""


class PrefectApiError(PrefectBridgeError):
    """The Prefect API answered with an error status."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class PrefectAuthError(PrefectApiError):
    """HTTP 401/403: the credentials in the Airflow connection were refused."""


class PrefectNotFoundError(PrefectApiError):
    """HTTP 404: the deployment or flow run does not exist."""


class PrefectInvalidRequestError(PrefectApiError):
    """HTTP 400/409/422: Prefect rejected the request (e.g. invalid parameters); do not retry."""


class PrefectFlowRunError(PrefectBridgeError):
    """The Prefect flow run did not complete successfully."""

    def __init__(
        self,
        message: str,
        *,
        flow_run_id: str,
        state_type: str | None,
        state_name: str | None,
        url: str,
    ) -> None:
        super().__init__(message)
        self.flow_run_id = flow_run_id
        self.state_type = state_type
        self.state_name = state_name
        self.url = url


class PrefectFlowRunFailed(PrefectFlowRunError):
    """The flow run ended Failed, Crashed or Cancelled."""


class PrefectFlowRunTimeout(PrefectFlowRunError):
    """The flow run did not reach a terminal state within the operator's timeout."""
