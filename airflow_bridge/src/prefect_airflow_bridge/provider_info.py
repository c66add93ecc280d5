"""Airflow provider metadata (entry point ``apache_airflow_provider`` in pyproject.toml).

Registers the ``prefect`` connection type with its form (Airflow 3.3 reads ``conn-fields`` and
``ui-field-behaviour`` from here without importing the hook), the operator extra link, and the
hook/operator/trigger modules shown under Admin > Providers.
"""

from __future__ import annotations

from typing import Any

from prefect_airflow_bridge import __version__

PACKAGE_NAME = "prefect-airflow-bridge"


def _field(label: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": schema}


#: Extra fields of the connection form; the hook reads them from the connection's extra.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth": _field(
        "Auth kind",
        "none (open-source server), basic (login/password, PREFECT_SERVER_API_AUTH_STRING) or "
        "bearer (Prefect Cloud API key in Password). Empty: bearer for Prefect Cloud, basic "
        "when a login or password is set.",
        {"type": ["string", "null"], "enum": ["none", "basic", "bearer", None]},
    ),
    "account_id": _field(
        "Prefect Cloud account id",
        "With the workspace id, for Prefect Cloud when Host is empty or https://api.prefect.cloud/api.",
        {"type": ["string", "null"]},
    ),
    "workspace_id": _field(
        "Prefect Cloud workspace id",
        "With the account id, for Prefect Cloud.",
        {"type": ["string", "null"]},
    ),
    "ui_url": _field(
        "Prefect UI URL",
        "Base URL of run links; default: derived from the API URL.",
        {"type": ["string", "null"]},
    ),
    "timeout": _field(
        "HTTP timeout (s)", "Seconds per call to the Prefect API.", {"type": ["number", "null"]}
    ),
    "max_retries": _field(
        "Retries",
        "Retries of a call on connection errors, 429 and 5xx (Retry-After honoured).",
        {"type": ["integer", "null"]},
    ),
}


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads about this package."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Prefect (airflow bridge)",
        "description": "Run Prefect deployments from Airflow over the Prefect REST API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Prefect",
                "external-doc-url": "https://docs.prefect.io/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "Prefect", "python-modules": ["prefect_airflow_bridge.hooks"]}
        ],
        "operators": [
            {"integration-name": "Prefect", "python-modules": ["prefect_airflow_bridge.operators"]}
        ],
        "triggers": [
            {"integration-name": "Prefect", "python-modules": ["prefect_airflow_bridge.triggers"]}
        ],
        "connection-types": [
            {
                "hook-class-name": "prefect_airflow_bridge.hooks.PrefectHook",
                "hook-name": "Prefect",
                "connection-type": "prefect",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Prefect API URL",
                        "login": "Login (basic auth)",
                        "password": "Password or API key",
                    },
                    "placeholders": {
                        "host": "http://prefect:4200/api",
                        "login": "admin (PREFECT_SERVER_API_AUTH_STRING user)",
                        "password": "basic auth password, or a Prefect Cloud API key (pnu_...)",
                    },
                },
            }
        ],
        "extra-links": ["prefect_airflow_bridge.links.PrefectFlowRunLink"],
    }
