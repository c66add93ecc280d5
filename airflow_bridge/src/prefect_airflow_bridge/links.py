"""The "Prefect flow run" button on the operator's task instance page."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

try:
    from airflow.sdk.execution_time.xcom import XCom
except ImportError:  # Airflow 3.0
    from airflow.models.xcom import XCom  # type: ignore[no-redef]

#: XCom key the operator pushes the run's UI URL under, as soon as the run exists.
FLOW_RUN_URL_XCOM_KEY = "flow_run_url"


class PrefectFlowRunLink(BaseOperatorLink):
    """Opens the Prefect UI page of the flow run this task instance started or reattached to."""

    name = "Prefect flow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The URL the operator pushed to XCom; empty before the run exists.

        Airflow 3 calls this in the worker when the task instance ends and stores the result as
        XCom ``_link_PrefectFlowRunLink``, which the UI's button reads.
        """
        url = XCom.get_value(ti_key=ti_key, key=FLOW_RUN_URL_XCOM_KEY)
        return str(url) if url else ""
