"""Run Prefect deployments from Airflow over the Prefect REST API (no `prefect` import).

Import the pieces from their modules (``prefect_airflow_bridge.operators`` etc.); this package
root stays import-free so DAG parsing pays only for what a DAG uses.
"""

__version__ = "0.1.0"
